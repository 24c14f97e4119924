//! Helpers of the models' tests: the models folder, the default decoder, tensor distances.

#![allow(dead_code)]

use std::path::PathBuf;

use memgpt_models::llama::decoder::Decoder;
use tch::{Device, Kind, Tensor};

/// The models folder (`MEMGPT_MODELS_DIR`, else the repository's `models/`).
pub fn models() -> PathBuf {
    memgpt_models::models_dir(std::env::var_os("MEMGPT_MODELS_DIR").map(PathBuf::from))
}

/// The default decoder in f32 on the CPU.
pub fn decoder() -> Decoder {
    Decoder::load(&models().join(memgpt_models::DEFAULT_DECODER), Device::Cpu, Kind::Float).unwrap()
}

/// The largest absolute difference of two tensors.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
