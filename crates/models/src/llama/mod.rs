//! The llama-family decoder: the model ([`Llama`]), its ragged step over several sequences,
//! memory-KV fusion, the KV cache, greedy generation, a loaded decoder with its tokeniser and
//! template, and random weights of real shapes.

pub mod decoder;
pub mod fused;
pub mod generate;
pub mod kv;
mod model;
pub mod ragged;
pub mod random;

pub use model::{Llama, LlamaConfig, DEFAULT_BLOCK_ROWS};
pub(crate) use model::{inv_freq, rope_tables, Layer};
