//! A llama-family causal LM on tch: RMSNorm, RoPE with the model's base, grouped-query
//! attention through `scaled_dot_product_attention`, SwiGLU, tied or untied output head and
//! optional q/k/v biases (Qwen2). Loads GGUF (any supported quantisation, dequantised into the
//! compute dtype) or a Hugging Face safetensors folder.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::kernels::blocks::BlockMatrix;
use crate::kernels::linear::Linear;
use crate::error::{ModelError, Result};
use crate::formats::gguf::{Gguf, Value};
use crate::llama::kv::KvCache;
use crate::formats::weights::{read_json, Weights};

/// Shape and hyper-parameters of a llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Architecture name (llama, qwen2, mistral…).
    pub arch: String,
    /// Transformer blocks.
    pub n_layer: i64,
    /// Hidden width.
    pub n_embd: i64,
    /// Feed-forward width.
    pub n_ff: i64,
    /// Query heads.
    pub n_head: i64,
    /// Key/value heads.
    pub n_head_kv: i64,
    /// Width of one head.
    pub head_dim: i64,
    /// RoPE base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Context length.
    pub context_length: i64,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Whether the output head is the embedding matrix (no output weight of its own).
    pub tied_head: bool,
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Tensor,
    /// Query, key and value projections stacked (`[q_out + 2 kv_out, n_embd]`): one matrix
    /// product per layer instead of three (on a GPU, decoding one token is bound by launches).
    pub(crate) wqkv: Linear,
    /// Their biases, stacked likewise (Qwen2).
    pub(crate) bqkv: Option<Tensor>,
    pub(crate) wo: Linear,
    pub(crate) ffn_norm: Tensor,
    /// Gate and up projections stacked (`[2 n_ff, n_embd]`).
    pub(crate) w_gate_up: Linear,
    pub(crate) w_down: Linear,
}

/// The decoder.
pub struct Llama {
    /// Its configuration.
    pub config: LlamaConfig,
    pub(crate) embed: Tensor,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Tensor,
    pub(crate) lm_head: Linear,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
    /// Compute device.
    pub device: Device,
    /// Compute dtype.
    pub kind: Kind,
    /// Products of at most this many rows go through the GGML blocks (see [`Llama::set_block_rows`]).
    pub(crate) block_rows: usize,
}

/// Rows up to which a product reads the GGML blocks rather than the f32 weights (measured on
/// a 2-core AVX2 machine: see docs/benchmarks.md).
pub const DEFAULT_BLOCK_ROWS: usize = 64;

const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2"];

fn config_from_gguf(g: &Gguf) -> Result<LlamaConfig> {
    let arch = g.require("general.architecture")?.as_str().unwrap_or_default().to_string();
    if !SUPPORTED.contains(&arch.as_str()) {
        return Err(ModelError::Unsupported { path: g.path.clone(), what: format!("architecture `{arch}` (supported: {})", SUPPORTED.join(", ")) });
    }
    let u = |key: &str| g.require_u64(&format!("{arch}.{key}")).map(|v| v as i64);
    let n_embd = u("embedding_length")?;
    let n_head = u("attention.head_count")?;
    let vocab_size = match g.metadata.get(&format!("{arch}.vocab_size")).and_then(Value::as_u64) {
        Some(v) => v as i64,
        None => g.metadata.get("tokenizer.ggml.tokens").and_then(Value::as_array).map(|a| a.len() as i64).unwrap_or(0),
    };
    let config = LlamaConfig {
        n_layer: u("block_count")?,
        n_embd,
        n_ff: u("feed_forward_length")?,
        n_head,
        n_head_kv: u("attention.head_count_kv").unwrap_or(n_head),
        head_dim: u("rope.dimension_count").unwrap_or(n_embd / n_head.max(1)),
        rope_base: g.metadata.get(&format!("{arch}.rope.freq_base")).and_then(Value::as_f64).unwrap_or(10_000.0),
        rms_eps: g.metadata.get(&format!("{arch}.attention.layer_norm_rms_epsilon")).and_then(Value::as_f64).unwrap_or(1e-5),
        context_length: u("context_length").unwrap_or(2048),
        vocab_size,
        tied_head: false, // set by `Llama::build` from the weights
        arch,
    };
    check_config(&config, &g.path)?;
    Ok(config)
}

fn check_config(c: &LlamaConfig, path: &Path) -> Result<()> {
    let ok = c.n_layer > 0 && c.n_embd > 0 && c.n_head > 0 && c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0 && c.head_dim % 2 == 0 && c.vocab_size > 0;
    if ok {
        Ok(())
    } else {
        Err(ModelError::format(path, format!("inconsistent model shape: {c:?}")))
    }
}

fn config_from_hf(path: &Path) -> Result<LlamaConfig> {
    let json = read_json(path)?;
    let arch = json.get("model_type").and_then(|v| v.as_str()).unwrap_or("llama").to_string();
    if !SUPPORTED.contains(&arch.as_str()) {
        return Err(ModelError::Unsupported { path: path.to_path_buf(), what: format!("model_type `{arch}`") });
    }
    let int = |key: &str| json.get(key).and_then(|v| v.as_i64()).ok_or_else(|| ModelError::format(path, format!("`{key}` is missing")));
    let n_embd = int("hidden_size")?;
    let n_head = int("num_attention_heads")?;
    let config = LlamaConfig {
        n_layer: int("num_hidden_layers")?,
        n_embd,
        n_ff: int("intermediate_size")?,
        n_head,
        n_head_kv: int("num_key_value_heads").unwrap_or(n_head),
        head_dim: int("head_dim").unwrap_or(n_embd / n_head.max(1)),
        rope_base: json.get("rope_theta").and_then(|v| v.as_f64()).unwrap_or(10_000.0),
        rms_eps: json.get("rms_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-5),
        context_length: int("max_position_embeddings").unwrap_or(2048),
        vocab_size: int("vocab_size")?,
        tied_head: false, // set by `Llama::build` from the weights
        arch,
    };
    check_config(&config, path)?;
    Ok(config)
}

/// GGUF stores llama q/k rows permuted for interleaved RoPE; this is the row order that undoes
/// it (rotate-half layout): row `i` of the result is row `source[i]` of the stored matrix. One
/// order for the f32 weights and their GGML blocks.
fn unpermuted_rows(out: usize, heads: usize) -> Vec<usize> {
    let (per, half) = (out / heads, out / heads / 2);
    (0..out).map(|r| (r / per) * per + (r % per % half) * 2 + (r % per) / half).collect()
}

/// The rows `source` of `w`, in that order.
fn select_rows(w: &Tensor, source: &[usize]) -> Tensor {
    let index: Vec<i64> = source.iter().map(|&r| r as i64).collect();
    w.index_select(0, &Tensor::from_slice(&index))
}

impl Llama {
    /// Loads a GGUF file.
    pub fn from_gguf(gguf: Gguf, device: Device, kind: Kind) -> Result<Self> {
        let config = config_from_gguf(&gguf)?;
        let permuted = config.arch != "qwen2";
        let names = |i: i64, n: &str| format!("blk.{i}.{n}");
        let weights = Weights::Gguf(gguf);
        Self::build(config, &weights, device, kind, &|i, part| {
            Some(match part {
                "attn_norm" => names(i, "attn_norm.weight"),
                "q" => names(i, "attn_q.weight"),
                "k" => names(i, "attn_k.weight"),
                "v" => names(i, "attn_v.weight"),
                "q_bias" => names(i, "attn_q.bias"),
                "k_bias" => names(i, "attn_k.bias"),
                "v_bias" => names(i, "attn_v.bias"),
                "o" => names(i, "attn_output.weight"),
                "ffn_norm" => names(i, "ffn_norm.weight"),
                "gate" => names(i, "ffn_gate.weight"),
                "up" => names(i, "ffn_up.weight"),
                "down" => names(i, "ffn_down.weight"),
                "embed" => "token_embd.weight".into(),
                "norm" => "output_norm.weight".into(),
                "head" => "output.weight".into(),
                _ => return None,
            })
        }, permuted)
    }

    /// Loads a Hugging Face folder (config.json and safetensors).
    pub fn from_hf_dir(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let config = config_from_hf(&dir.join("config.json"))?;
        let weights = Weights::safetensors_dir(dir)?;
        let names = |i: i64, n: &str| format!("model.layers.{i}.{n}");
        Self::build(config, &weights, device, kind, &|i, part| {
            Some(match part {
                "attn_norm" => names(i, "input_layernorm.weight"),
                "q" => names(i, "self_attn.q_proj.weight"),
                "k" => names(i, "self_attn.k_proj.weight"),
                "v" => names(i, "self_attn.v_proj.weight"),
                "q_bias" => names(i, "self_attn.q_proj.bias"),
                "k_bias" => names(i, "self_attn.k_proj.bias"),
                "v_bias" => names(i, "self_attn.v_proj.bias"),
                "o" => names(i, "self_attn.o_proj.weight"),
                "ffn_norm" => names(i, "post_attention_layernorm.weight"),
                "gate" => names(i, "mlp.gate_proj.weight"),
                "up" => names(i, "mlp.up_proj.weight"),
                "down" => names(i, "mlp.down_proj.weight"),
                "embed" => "model.embed_tokens.weight".into(),
                "norm" => "model.norm.weight".into(),
                "head" => "lm_head.weight".into(),
                _ => return None,
            })
        }, false)
    }

    fn build(
        config: LlamaConfig,
        w: &Weights,
        device: Device,
        kind: Kind,
        name: &dyn Fn(i64, &str) -> Option<String>,
        permuted: bool,
    ) -> Result<Self> {
        let mut config = config;
        config.tied_head = !w.has(&name(0, "head").expect("known part"));
        let c = &config;
        let n = |i: i64, p: &str| -> String { name(i, p).expect("known part") };
        let (q_out, kv_out) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
        let load = |t: &str, shape: &[i64]| w.load(t, shape, kind, device);
        // The GGML blocks are kept beside the f32 weights for the CPU's small products.
        let keep_blocks = device == Device::Cpu && kind == Kind::Float;
        let blocks = |t: &str, rows: i64, cols: i64| if keep_blocks { w.blocks(t, rows, cols) } else { None };
        // The q and k row orders, the same for every layer.
        let q_rows = unpermuted_rows(q_out as usize, c.n_head as usize);
        let k_rows = unpermuted_rows(kv_out as usize, c.n_head_kv as usize);
        let mut layers = Vec::with_capacity(c.n_layer as usize);
        for i in 0..c.n_layer {
            let mut wq = w.load(&n(i, "q"), &[q_out, c.n_embd], Kind::Float, Device::Cpu)?;
            let mut wk = w.load(&n(i, "k"), &[kv_out, c.n_embd], Kind::Float, Device::Cpu)?;
            if permuted {
                wq = select_rows(&wq, &q_rows);
                wk = select_rows(&wk, &k_rows);
            }
            let wv = w.load(&n(i, "v"), &[kv_out, c.n_embd], Kind::Float, Device::Cpu)?;
            let parts = [("q_bias", q_out), ("k_bias", kv_out), ("v_bias", kv_out)];
            let bqkv = if parts.iter().any(|(part, _)| w.has(&n(i, part))) {
                // A missing one of the three (never seen in practice) is zero.
                let biases = parts
                    .iter()
                    .map(|&(part, len)| if w.has(&n(i, part)) { w.load(&n(i, part), &[len], Kind::Float, Device::Cpu) } else { Ok(Tensor::zeros([len], (Kind::Float, Device::Cpu))) })
                    .collect::<Result<Vec<_>>>()?;
                Some(Tensor::cat(&biases, 0).to_kind(kind).to_device(device))
            } else {
                None
            };
            let gate = w.load(&n(i, "gate"), &[c.n_ff, c.n_embd], Kind::Float, Device::Cpu)?;
            let up = w.load(&n(i, "up"), &[c.n_ff, c.n_embd], Kind::Float, Device::Cpu)?;
            let qkv_blocks = (|| {
                let (mut q, mut k) = (blocks(&n(i, "q"), q_out, c.n_embd)?, blocks(&n(i, "k"), kv_out, c.n_embd)?);
                if permuted {
                    q = q.select_rows(&q_rows);
                    k = k.select_rows(&k_rows);
                }
                BlockMatrix::concat(vec![q, k, blocks(&n(i, "v"), kv_out, c.n_embd)?])
            })();
            let gate_up_blocks = (|| BlockMatrix::concat(vec![blocks(&n(i, "gate"), c.n_ff, c.n_embd)?, blocks(&n(i, "up"), c.n_ff, c.n_embd)?]))();
            layers.push(Layer {
                attn_norm: load(&n(i, "attn_norm"), &[c.n_embd])?,
                wqkv: Linear::with_blocks(Tensor::cat(&[wq, wk, wv], 0).to_kind(kind).to_device(device), qkv_blocks),
                bqkv,
                wo: Linear::with_blocks(load(&n(i, "o"), &[c.n_embd, q_out])?, blocks(&n(i, "o"), c.n_embd, q_out)),
                ffn_norm: load(&n(i, "ffn_norm"), &[c.n_embd])?,
                w_gate_up: Linear::with_blocks(Tensor::cat(&[gate, up], 0).to_kind(kind).to_device(device), gate_up_blocks),
                w_down: Linear::with_blocks(load(&n(i, "down"), &[c.n_embd, c.n_ff])?, blocks(&n(i, "down"), c.n_embd, c.n_ff)),
            });
        }
        let embed = load(&n(0, "embed"), &[c.vocab_size, c.n_embd])?;
        let head = if c.tied_head { "embed" } else { "head" };
        let head_weight = if c.tied_head { embed.shallow_clone() } else { load(&n(0, head), &[c.vocab_size, c.n_embd])? };
        let lm_head = Linear::with_blocks(head_weight, blocks(&n(0, head), c.vocab_size, c.n_embd));
        let norm = load(&n(0, "norm"), &[c.n_embd])?;
        let (cos, sin) = rope_tables(c, kind, device);
        Ok(Self { config, embed, layers, norm, lm_head, cos, sin, device, kind, block_rows: DEFAULT_BLOCK_ROWS })
    }

    /// A KV cache for `batch` sequences of up to `capacity` tokens.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        KvCache::new(self.config.n_layer, batch, self.config.n_head_kv, capacity, self.config.head_dim, self.kind, self.device)
    }

    pub(crate) fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        // One fused kernel where libtorch has one; statistics in f32 whatever the dtype.
        x.rms_norm([self.config.n_embd], Some(weight), self.config.rms_eps)
    }

    /// cos and sin at `positions` ([B, T]), shaped [B, T, 1, D] to broadcast over heads.
    pub(crate) fn rope_at(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let (b, t) = (positions.size()[0], positions.size()[1]);
        let flat = positions.flatten(0, 1);
        (self.cos.index_select(0, &flat).view([b, t, 1, -1]), self.sin.index_select(0, &flat).view([b, t, 1, -1]))
    }

    /// Queries, keys and values of `h` ([B, T, n_embd]) through the stacked projection, queries
    /// and keys rotated together (`rope` from [`Llama::rope_at`]); each [B, heads, T, head_dim].
    pub(crate) fn attention_inputs(&self, layer: &Layer, h: &Tensor, rope: &(Tensor, Tensor)) -> (Tensor, Tensor, Tensor) {
        let c = &self.config;
        let (b, t) = (h.size()[0], h.size()[1]);
        let qkv = self.linear(&layer.wqkv, h, layer.bqkv.as_ref()).view([b, t, c.n_head + 2 * c.n_head_kv, c.head_dim]);
        let qk = self.rope(&qkv.narrow(2, 0, c.n_head + c.n_head_kv), rope);
        let q = qk.narrow(2, 0, c.n_head).transpose(1, 2);
        let k = qk.narrow(2, c.n_head, c.n_head_kv).transpose(1, 2);
        let v = qkv.narrow(2, c.n_head + c.n_head_kv, c.n_head_kv).transpose(1, 2);
        (q, k, v)
    }

    /// The SwiGLU feed-forward block of `h`.
    pub(crate) fn feed_forward(&self, layer: &Layer, h: &Tensor) -> Tensor {
        let n_ff = self.config.n_ff;
        let gate_up = self.linear(&layer.w_gate_up, h, None);
        self.linear(&layer.w_down, &(gate_up.narrow(-1, 0, n_ff).silu() * gate_up.narrow(-1, n_ff, n_ff)), None)
    }

    pub(crate) fn rope(&self, x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Tensor {
        let half = self.config.head_dim / 2;
        let x1 = x.narrow(-1, 0, half);
        let x2 = x.narrow(-1, half, half);
        let rotated = Tensor::cat(&[x2.neg(), x1], -1);
        x * cos + rotated * sin
    }

    /// Runs `tokens` ([B, T]) at `positions` ([B, T]), appending their keys and values to the
    /// cache; returns the logits of the last position of each row ([B, vocab], f32).
    /// `key_mask` ([B, L] bool, L = cache length after the call) marks keys each row may see
    /// (false for padding); causality is applied on top.
    pub fn forward(&self, tokens: &Tensor, positions: &Tensor, cache: &mut KvCache, key_mask: Option<&Tensor>) -> Result<Tensor> {
        let hidden = self.forward_hidden(tokens, positions, cache, key_mask)?;
        let last = hidden.select(1, -1);
        Ok(self.logits(&last))
    }

    /// As [`Llama::forward`], returning the final hidden states of every position ([B, T, n_embd]).
    pub fn forward_hidden(&self, tokens: &Tensor, positions: &Tensor, cache: &mut KvCache, key_mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t) = tokens.size2()?;
        let c = &self.config;
        let start = cache.len();
        if start + t > cache.capacity() {
            return Err(ModelError::InvalidInput { field: "tokens".into(), reason: format!("{} tokens exceed the KV cache capacity {}", start + t, cache.capacity()) });
        }
        let total = start + t;
        // Boolean mask [B, 1, T, L]: causal within the new tokens, plus the caller's key mask.
        let mask = if key_mask.is_none() && t == 1 {
            None
        } else {
            let q_pos = Tensor::arange_start(start, total, (Kind::Int64, self.device)).unsqueeze(1);
            let k_pos = Tensor::arange(total, (Kind::Int64, self.device)).unsqueeze(0);
            let causal = k_pos.le_tensor(&q_pos).view([1, 1, t, total]);
            Some(match key_mask {
                Some(m) => causal.logical_and(&m.view([b, 1, 1, total])),
                None => causal,
            })
        };
        let mut x = self.embed.index_select(0, &tokens.flatten(0, 1)).view([b, t, c.n_embd]);
        // Gathered once per call, not once per layer.
        let rope = self.rope_at(positions);
        for (i, layer) in self.layers.iter().enumerate() {
            let (q, k, v) = self.attention_inputs(layer, &self.rms_norm(&x, &layer.attn_norm), &rope);
            let (keys, values) = cache.append(i, &k, &v, start);
            let attn = Tensor::scaled_dot_product_attention(&q, &keys, &values, mask.as_ref(), 0.0, false, None, true);
            let attn = attn.transpose(1, 2).reshape([b, t, c.n_head * c.head_dim]);
            x = x + self.linear(&layer.wo, &attn, None);
            x = &x + self.feed_forward(layer, &self.rms_norm(&x, &layer.ffn_norm));
        }
        cache.set_len(total);
        Ok(self.rms_norm(&x, &self.norm))
    }

    /// Logits of hidden states ([.., n_embd] to [.., vocab], f32).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        self.linear(&self.lm_head, hidden, None).to_kind(Kind::Float)
    }

    /// `x · wᵀ (+ bias)` through [`Linear::forward`] with this model's block-row limit.
    pub(crate) fn linear(&self, w: &Linear, x: &Tensor, bias: Option<&Tensor>) -> Tensor {
        w.forward(x, bias, self.block_rows)
    }

    /// Products of at most `rows` rows (decoding a few sequences) read the GGML blocks the
    /// weights were loaded from (Q4_0, Q4_1, Q8_0 on the CPU, f32 compute) instead of the
    /// dequantised f32 weights; 0 turns this off. Default [`DEFAULT_BLOCK_ROWS`].
    pub fn set_block_rows(&mut self, rows: usize) {
        self.block_rows = rows;
    }

    /// Bytes of GGML blocks kept beside the f32 weights (0 when none).
    pub fn block_bytes(&self) -> usize {
        let layers: usize = self.layers.iter().map(|l| l.wqkv.block_bytes() + l.wo.block_bytes() + l.w_gate_up.block_bytes() + l.w_down.block_bytes()).sum();
        layers + self.lm_head.block_bytes()
    }
}

pub(crate) fn rope_tables(c: &LlamaConfig, kind: Kind, device: Device) -> (Tensor, Tensor) {
    // The frequencies as transformers computes them (f32); the angles pos * inv_freq and their
    // cos and sin in f64, rounded once to the compute dtype: exact to the dtype's precision at
    // every position, so a key rotated by an offset (memory-KV fusion) matches the key
    // computed at the target position.
    let inv_freq = Tensor::from_slice(&inv_freq(c));
    let positions = Tensor::arange(c.context_length, (Kind::Double, Device::Cpu)).unsqueeze(1);
    let angles = positions * inv_freq.unsqueeze(0);
    let angles = Tensor::cat(&[&angles, &angles], -1);
    (angles.cos().to_kind(kind).to_device(device), angles.sin().to_kind(kind).to_device(device))
}

/// RoPE frequencies, `head_dim / 2` of them: 1 / base^(2i/d) computed in f32 as transformers
/// does, widened to f64.
pub(crate) fn inv_freq(c: &LlamaConfig) -> Vec<f64> {
    (0..c.head_dim / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / c.head_dim as f32;
            f64::from(1.0f32 / (c.rope_base as f32).powf(exponent))
        })
        .collect()
}
