//! What the engine is started with, and what it reports of the loaded model.

use std::path::PathBuf;

use tch::{Device, Kind};

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// GGUF file or Hugging Face folder.
    pub model: PathBuf,
    /// Compute device.
    pub device: Device,
    /// Compute dtype.
    pub kind: Kind,
    /// Intra-op threads (0: default).
    pub threads: usize,
    /// Most sequences in the running batch.
    pub max_batch: usize,
    /// Most prompt tokens prefilled per step.
    pub max_batch_prefill_tokens: usize,
    /// Most KV tokens reserved at once.
    pub max_kv_tokens: u64,
    /// Most jobs waiting for a slot.
    pub max_waiting: usize,
    /// Last layers the memory shares average over.
    pub attribution_layers: usize,
    /// Extractive answers start only in the memory the last prompt token attends to most.
    pub extractive_focus: bool,
    /// Prefix-cache budget in bytes.
    pub prefix_cache_bytes: u64,
    /// Tokens per prefix-cache block.
    pub prefix_block_tokens: usize,
    /// Memory-KV cache budget in bytes (`fused` mode).
    pub memory_cache_bytes: u64,
    /// Leading tokens of each cached memory recomputed in place in `fused` mode.
    pub recompute_head_tokens: usize,
    /// Directory of the memory-KV cache's disk tier; none when unset.
    pub memory_cache_dir: Option<PathBuf>,
    /// Bytes the disk tier may hold.
    pub memory_cache_disk_bytes: u64,
}

/// What the loaded model is.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// Device name.
    pub device: String,
    /// Dtype name.
    pub dtype: String,
    /// Context length in tokens.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab: usize,
}
