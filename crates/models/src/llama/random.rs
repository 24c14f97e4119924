//! Random-weight decoders of real shapes, for measuring speed where the real weights cannot go
//! (a GPU machine reached without them, or an 8B-sized model never downloaded) and for
//! comparing devices on the same weights. Values follow transformers' initialisation
//! (normal, std 0.02; norms one), so activations stay in a realistic range.

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::linear::Linear;
use crate::llama::{rope_tables, Layer, Llama, LlamaConfig, DEFAULT_BLOCK_ROWS};

/// Shape names accepted by [`LlamaConfig::preset`].
pub const PRESETS: &[&str] = &["tiny", "smollm2-135m", "llama3-8b"];

impl LlamaConfig {
    /// A named real shape: `smollm2-135m` (SmolLM2-135M), `llama3-8b` (Llama-3-8B) or `tiny`
    /// (two layers, for tests).
    pub fn preset(name: &str) -> Result<Self> {
        let (n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, rope_base, vocab_size, tied_head) = match name {
            "tiny" => (2, 64, 128, 4, 2, 16, 10_000.0, 256, true),
            "smollm2-135m" => (30, 576, 1536, 9, 3, 64, 100_000.0, 49_152, true),
            "llama3-8b" => (32, 4096, 14_336, 32, 8, 128, 500_000.0, 128_256, false),
            other => {
                return Err(ModelError::InvalidInput { field: "shape".into(), reason: format!("`{other}` is not one of {}", PRESETS.join(", ")) })
            }
        };
        Ok(Self { arch: "llama".into(), n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, rope_base, rms_eps: 1e-5, context_length: 8192, vocab_size, tied_head })
    }

    /// A fixed synthetic prompt of `len` token ids spread over the vocabulary (benchmarks and
    /// tests of random-weight models, which have no tokenizer).
    pub fn synthetic_prompt(&self, len: usize) -> Vec<u32> {
        (0..len).map(|i| ((i as i64 * 7919 + 13) % self.vocab_size) as u32).collect()
    }

    /// Parameter count (embedding, blocks, final norm, and the output head when untied).
    pub fn parameters(&self) -> i64 {
        let (q_out, kv_out) = (self.n_head * self.head_dim, self.n_head_kv * self.head_dim);
        let block = 2 * self.n_embd * q_out + 2 * self.n_embd * kv_out + 3 * self.n_embd * self.n_ff + 2 * self.n_embd;
        let embed = self.vocab_size * self.n_embd;
        embed + self.n_layer * block + self.n_embd + if self.tied_head { 0 } else { embed }
    }
}

impl Llama {
    /// A model of `config`'s shape with random weights drawn on `device` in `kind` (seeded, so
    /// two models of one seed on one device are equal).
    pub fn random(config: LlamaConfig, device: Device, kind: Kind, seed: i64) -> Self {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(seed);
        let c = &config;
        let normal = |shape: &[i64]| Tensor::randn(shape, (kind, device)) * 0.02;
        let ones = |len: i64| Tensor::ones([len], (kind, device));
        let (q_out, kv_out) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
        let layers = (0..c.n_layer)
            .map(|_| Layer {
                attn_norm: ones(c.n_embd),
                wqkv: Linear::plain(normal(&[q_out + 2 * kv_out, c.n_embd])),
                bqkv: None,
                wo: Linear::plain(normal(&[c.n_embd, q_out])),
                ffn_norm: ones(c.n_embd),
                w_gate_up: Linear::plain(normal(&[2 * c.n_ff, c.n_embd])),
                w_down: Linear::plain(normal(&[c.n_embd, c.n_ff])),
            })
            .collect();
        let embed = normal(&[c.vocab_size, c.n_embd]);
        let lm_head = Linear::plain(if c.tied_head { embed.shallow_clone() } else { normal(&[c.vocab_size, c.n_embd]) });
        let (cos, sin) = rope_tables(c, kind, device);
        Self { norm: ones(c.n_embd), embed, layers, lm_head, cos, sin, device, kind, config, block_rows: DEFAULT_BLOCK_ROWS }
    }

    /// A copy of this model on `device` in `kind` (the same weights, converted).
    pub fn to_device(&self, device: Device, kind: Kind) -> Self {
        let _guard = tch::no_grad_guard();
        let to = |t: &Tensor| t.to_kind(kind).to_device(device);
        let opt = |t: &Option<Tensor>| t.as_ref().map(to);
        let layers = self
            .layers
            .iter()
            .map(|l| Layer {
                attn_norm: to(&l.attn_norm),
                wqkv: l.wqkv.to(device, kind),
                bqkv: opt(&l.bqkv),
                wo: l.wo.to(device, kind),
                ffn_norm: to(&l.ffn_norm),
                w_gate_up: l.w_gate_up.to(device, kind),
                w_down: l.w_down.to(device, kind),
            })
            .collect();
        let embed = to(&self.embed);
        let lm_head = if self.config.tied_head { self.lm_head.with_weight(embed.shallow_clone()) } else { self.lm_head.to(device, kind) };
        let (cos, sin) = rope_tables(&self.config, kind, device);
        Self { config: self.config.clone(), embed, layers, norm: to(&self.norm), lm_head, cos, sin, device, kind, block_rows: self.block_rows }
    }
}
