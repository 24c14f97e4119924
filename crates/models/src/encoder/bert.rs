//! A BERT-family sentence encoder on tch: embeddings, post-norm transformer layers with GELU,
//! mean pooling over the attention mask and L2 normalisation (sentence-transformers' recipe).

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::text::tokenizer::TextTokenizer;
use crate::formats::weights::{read_json, Weights};

/// Compute mode of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32 (the mode held to the reference).
    #[default]
    F32,
    /// Autocast-style: linear layers, GELU and attention in bf16; the residual stream, norms and
    /// pooling in f32. About 2x f32 on CPUs with native bf16 (AVX512-BF16, AMX).
    Bf16,
}

impl Precision {
    /// Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16); elsewhere libtorch
    /// emulates bf16 products, several times slower than f32.
    pub fn cpu_has_native_bf16() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            // AMX-BF16: CPUID leaf 7, EDX bit 22 (its detection macro is not stable yet).
            let amx_bf16 = std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 22) != 0;
            std::arch::is_x86_feature_detected!("avx512bf16") || amx_bf16
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(ModelError::InvalidInput { field: "precision".into(), reason: format!("unknown encoder precision `{other}` (expected f32 or bf16)") }),
        }
    }
}

struct Layer {
    /// Query, key and value stacked: one product instead of three.
    qkv: (Tensor, Tensor),
    attn_out: (Tensor, Tensor),
    attn_norm: (Tensor, Tensor),
    inter: (Tensor, Tensor),
    out: (Tensor, Tensor),
    out_norm: (Tensor, Tensor),
}

/// The encoder.
pub struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: (Tensor, Tensor),
    layers: Vec<Layer>,
    heads: i64,
    eps: f64,
    /// Output width.
    pub dim: i64,
    /// Longest input in tokens (the sentence-transformers `max_seq_length`).
    pub max_tokens: usize,
    /// Tokeniser.
    pub tokenizer: TextTokenizer,
    /// Device.
    pub device: Device,
    /// Compute mode.
    pub precision: Precision,
    /// Model folder.
    pub dir: PathBuf,
}

impl Bert {
    /// Loads a sentence-transformers folder (config.json, model.safetensors, tokenizer.json).
    pub fn load(dir: &Path, device: Device, precision: Precision) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        let int = |k: &str| config.get(k).and_then(|v| v.as_i64()).ok_or_else(|| ModelError::format(&config_path, format!("`{k}` is missing")));
        let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("bert");
        if model_type != "bert" {
            return Err(ModelError::Unsupported { path: config_path.clone(), what: format!("encoder model_type `{model_type}` (supported: bert)") });
        }
        let (hidden, layers, heads, inter) = (int("hidden_size")?, int("num_hidden_layers")?, int("num_attention_heads")?, int("intermediate_size")?);
        let eps = config.get("layer_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-12);
        let max_pos = int("max_position_embeddings")?;
        let st_config = dir.join("sentence_bert_config.json");
        let max_tokens = if st_config.exists() {
            read_json(&st_config)?.get("max_seq_length").and_then(|v| v.as_i64()).unwrap_or(max_pos)
        } else {
            max_pos
        }
        .min(max_pos) as usize;
        let mut tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        tokenizer.set_truncation(max_tokens)?;

        let w = Weights::safetensors_dir(dir)?;
        let kind = Kind::Float;
        let prefix = if w.has("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let t = |name: &str, shape: &[i64]| w.load(&format!("{prefix}{name}"), shape, kind, device);
        let lin = |name: &str, out: i64, inp: i64| -> Result<(Tensor, Tensor)> {
            Ok((t(&format!("{name}.weight"), &[out, inp])?, t(&format!("{name}.bias"), &[out])?))
        };
        let norm = |name: &str| -> Result<(Tensor, Tensor)> { Ok((t(&format!("{name}.weight"), &[hidden])?, t(&format!("{name}.bias"), &[hidden])?)) };
        let vocab = int("vocab_size")?;
        let types = int("type_vocab_size").unwrap_or(2);
        let mut all = Vec::with_capacity(layers as usize);
        for i in 0..layers {
            let p = format!("encoder.layer.{i}");
            let (q, k, v) = (
                lin(&format!("{p}.attention.self.query"), hidden, hidden)?,
                lin(&format!("{p}.attention.self.key"), hidden, hidden)?,
                lin(&format!("{p}.attention.self.value"), hidden, hidden)?,
            );
            all.push(Layer {
                qkv: (Tensor::cat(&[&q.0, &k.0, &v.0], 0), Tensor::cat(&[&q.1, &k.1, &v.1], 0)),
                attn_out: lin(&format!("{p}.attention.output.dense"), hidden, hidden)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                inter: lin(&format!("{p}.intermediate.dense"), inter, hidden)?,
                out: lin(&format!("{p}.output.dense"), hidden, inter)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let mut bert = Self {
            word: t("embeddings.word_embeddings.weight", &[vocab, hidden])?,
            position: t("embeddings.position_embeddings.weight", &[max_pos, hidden])?,
            token_type: t("embeddings.token_type_embeddings.weight", &[types, hidden])?,
            emb_norm: norm("embeddings.LayerNorm")?,
            layers: all,
            heads,
            eps,
            dim: hidden,
            max_tokens,
            tokenizer,
            device,
            precision,
            dir: dir.to_path_buf(),
        };
        if precision == Precision::Bf16 && device == Device::Cpu && !Precision::cpu_has_native_bf16() {
            tracing::warn!(precision = "bf16", "this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 encoding is emulated and slower than f32");
        }
        if precision == Precision::Bf16 {
            // Linear layers (weights and biases) in bf16; embeddings and norms stay f32.
            for l in &mut bert.layers {
                for lin in [&mut l.qkv, &mut l.attn_out, &mut l.inter, &mut l.out] {
                    *lin = (lin.0.to_kind(Kind::BFloat16), lin.1.to_kind(Kind::BFloat16));
                }
            }
        }
        Ok(bert)
    }

    /// A linear layer in the compute dtype: in bf16 mode its input is cast to bf16 and its
    /// output stays bf16 (as under autocast), so a product feeding another (GELU between them,
    /// or attention) converts nothing; residual sums promote back to f32 before each norm.
    fn linear(&self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Tensor {
        x.to_kind(w.kind()).linear(w, Some(b))
    }

    fn layer_norm(&self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Tensor {
        x.layer_norm([self.dim], Some(w), Some(b), self.eps, false)
    }

    /// Embeds one padded batch: `ids` and `mask` are [B, T]; returns [B, dim], unit length.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t) = ids.size2().expect("2-D ids");
        let positions = Tensor::arange(t, (Kind::Int64, self.device)).unsqueeze(0);
        let mut x = self.word.index_select(0, &ids.flatten(0, 1)).view([b, t, self.dim])
            + self.position.index_select(0, &positions.flatten(0, 1)).view([1, t, self.dim])
            + self.token_type.get(0).view([1, 1, self.dim]);
        x = self.layer_norm(&x, &self.emb_norm);
        let head_dim = self.dim / self.heads;
        // Additive mask: 0 for tokens, a large negative for padding.
        let key_mask = mask.to_kind(Kind::Bool).view([b, 1, 1, t]);
        for l in &self.layers {
            let qkv = self.linear(&x, &l.qkv).view([b, t, 3, self.heads, head_dim]).permute([2, 0, 3, 1, 4]);
            let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
            let attn = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&key_mask), 0.0, false, None, false);
            let attn = attn.transpose(1, 2).reshape([b, t, self.dim]);
            x = self.layer_norm(&(self.linear(&attn, &l.attn_out) + &x), &l.attn_norm);
            let h = self.linear(&x, &l.inter).gelu("none");
            x = self.layer_norm(&(self.linear(&h, &l.out) + &x), &l.out_norm);
        }
        let m = mask.to_kind(Kind::Float).unsqueeze(-1);
        let summed = (x * &m).sum_dim_intlist(1, false, Kind::Float);
        let counts = m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9);
        let mean = summed / counts;
        let norm = mean.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
        mean / norm
    }

    /// Embeds texts: tokenised (truncated at the model's limit), batched by length so padding
    /// stays small, `batch_size` at a time; returns one unit vector per text, in input order.
    pub fn embed(&self, texts: &[String], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let encoded = self.tokenizer.encode_batch_with_special(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        let _guard = tch::no_grad_guard();
        for chunk in order.chunks(batch_size.max(1)) {
            let t = chunk.iter().map(|&i| encoded[i].len()).max().unwrap_or(1).max(1);
            let mut ids = vec![0i64; chunk.len() * t];
            let mut mask = vec![0i64; chunk.len() * t];
            for (row, &i) in chunk.iter().enumerate() {
                for (j, &id) in encoded[i].iter().enumerate() {
                    ids[row * t + j] = id as i64;
                    mask[row * t + j] = 1;
                }
            }
            let shape = [chunk.len() as i64, t as i64];
            let ids = Tensor::from_slice(&ids).view(shape).to_device(self.device);
            let mask = Tensor::from_slice(&mask).view(shape).to_device(self.device);
            let embeddings = self.forward(&ids, &mask).to_device(Device::Cpu);
            let flat: Vec<f32> = Vec::try_from(embeddings.flatten(0, 1)).map_err(ModelError::from)?;
            for (row, &i) in chunk.iter().enumerate() {
                out[i] = flat[row * self.dim as usize..(row + 1) * self.dim as usize].to_vec();
            }
        }
        Ok(out)
    }
}
