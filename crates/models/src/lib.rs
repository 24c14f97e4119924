//! Real models on tch: a BERT-family sentence encoder and a llama-family decoder, loaded from
//! Hugging Face folders (safetensors, tokenizer.json) or GGUF files, with their tokenisers and
//! chat templates. Model folders are found under a models directory (see [`models_dir`]).
//!
//! - [`formats`]: the files weights come in (GGUF with its quantisation types, safetensors);
//! - `kernels`: the block products on the CPU (AVX2, AVX-512) and the linear layers;
//! - [`llama`]: the decoder (model, ragged step, memory-KV fusion, KV cache, generation,
//!   random weights of real shapes);
//! - [`text`]: tokeniser and chat template;
//! - [`encoder`]: the sentence encoder (BERT family) and its thread.

pub mod device;
pub mod encoder;
pub mod error;
pub mod formats;
mod kernels;
pub mod llama;
pub mod text;

pub use error::{ModelError, Result};

use std::path::PathBuf;

/// Folder of the default encoder under the models directory.
pub const DEFAULT_ENCODER: &str = "all-MiniLM-L6-v2";
/// File of the default decoder under the models directory.
pub const DEFAULT_DECODER: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The models directory: `MEMGPT_MODELS_DIR` when given by the caller's configuration, else
/// `models/` at the repository root (found from this crate's location at build time, so it
/// does not depend on the working directory).
pub fn models_dir(configured: Option<PathBuf>) -> PathBuf {
    configured.unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")))
}
