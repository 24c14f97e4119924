//! The files weights come in: GGUF (with its quantisation types) and safetensors, read into
//! tensors by name ([`weights`]).

pub mod gguf;
pub mod quant;
pub mod weights;
