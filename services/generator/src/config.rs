//! Command-line and environment configuration (`MEMGPT_GENERATOR_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::engine::RecomputeRule;

/// Configuration of `memgpt-generator`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "memgpt-generator", version, about = "The MemGPT generator service")]
pub struct GeneratorConfig {
    /// Address to listen on.
    #[arg(long, env = "MEMGPT_GENERATOR_LISTEN", default_value = "127.0.0.1:50053")]
    pub listen: SocketAddr,
    /// Model: a GGUF file or a Hugging Face folder (default: the default decoder under the
    /// models directory).
    #[arg(long, env = "MEMGPT_GENERATOR_MODEL")]
    pub model: Option<PathBuf>,
    /// Models directory (default: `models/` at the repository root).
    #[arg(long, env = "MEMGPT_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Compute device: auto, cpu or cuda:N.
    #[arg(long, env = "MEMGPT_GENERATOR_DEVICE", default_value = "auto")]
    pub device: String,
    /// Compute dtype: auto (f32 on CPU, bf16 on CUDA), f32 or bf16.
    #[arg(long, env = "MEMGPT_GENERATOR_DTYPE", default_value = "auto")]
    pub dtype: String,
    /// Intra-op threads for the model (0: the library's default).
    #[arg(long, env = "MEMGPT_GENERATOR_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Most sequences decoded together.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_BATCH", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch: u32,
    /// Most prompt tokens prefilled in one step (longer prompts are prefilled in chunks).
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_BATCH_PREFILL_TOKENS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_prefill_tokens: u32,
    /// Most tokens reserved in KV caches at once (prompt plus max_new_tokens per sequence).
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_KV_TOKENS", default_value_t = 32768, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_kv_tokens: u64,
    /// Requests that may wait for a slot; beyond it RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_WAITING", default_value_t = 64)]
    pub max_waiting: usize,
    /// max_new_tokens when a request leaves it unset.
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_MAX_NEW_TOKENS", default_value_t = 256)]
    pub default_max_new_tokens: u32,
    /// Sentences a free answer ends after when a request leaves it unset (0: no limit).
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_MAX_SENTENCES", default_value_t = 0)]
    pub default_max_sentences: u32,
    /// Largest max_new_tokens a request may ask for.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_NEW_TOKENS_LIMIT", default_value_t = 2048)]
    pub max_new_tokens_limit: u32,
    /// Temperature when a request leaves it unset (0: greedy).
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_TEMPERATURE", default_value_t = 0.0)]
    pub default_temperature: f32,
    /// top_p when a request leaves it unset.
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_TOP_P", default_value_t = 1.0)]
    pub default_top_p: f32,
    /// top_k when a request leaves it unset (0: no limit).
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_TOP_K", default_value_t = 0)]
    pub default_top_k: u32,
    /// Repetition penalty when a request leaves it unset (1: none).
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_REPETITION_PENALTY", default_value_t = 1.0)]
    pub default_repetition_penalty: f32,
    /// Most chat messages per request.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_MESSAGES", default_value_t = 256)]
    pub max_messages: usize,
    /// Most bytes of prompt text (all messages together).
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_PROMPT_BYTES", default_value_t = 256 * 1024)]
    pub max_prompt_bytes: usize,
    /// Most memories per request.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_MEMORIES", default_value_t = 32)]
    pub max_memories: usize,
    /// Most bytes of one memory's text.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_MEMORY_BYTES", default_value_t = 8 * 1024)]
    pub max_memory_bytes: usize,
    /// Most stop strings, and most bytes of each.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_STOP", default_value_t = 8)]
    pub max_stop: usize,
    /// Last layers whose attention the memory shares average over.
    #[arg(long, env = "MEMGPT_GENERATOR_ATTRIBUTION_LAYERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub attribution_layers: u32,
    /// Extractive answers start in the memory the question attends to most (the last prompt
    /// token's attention share over these layers); `false`: in any memory, as the model's
    /// first token picks. The default is the measured better one (docs/benchmarks.md).
    #[arg(long, env = "MEMGPT_GENERATOR_EXTRACTIVE_FOCUS", default_value_t = true, action = clap::ArgAction::Set)]
    pub extractive_focus: bool,
    /// Extractive answers are guided by the question: they start in the sentence of their
    /// memory that shares the most words with it, not at a word it uses, and end at a clause's
    /// end (each unless nothing else is left); `false`: wherever the model takes them. The
    /// default is the measured better one (docs/benchmarks.md).
    #[arg(long, env = "MEMGPT_GENERATOR_EXTRACTIVE_GUIDED", default_value_t = true, action = clap::ArgAction::Set)]
    pub extractive_guided: bool,
    /// Bytes of prompt-prefix KV states kept for reuse (0: no prefix cache).
    #[arg(long, env = "MEMGPT_GENERATOR_PREFIX_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub prefix_cache_bytes: u64,
    /// Tokens per prefix-cache block.
    #[arg(long, env = "MEMGPT_GENERATOR_PREFIX_BLOCK_TOKENS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub prefix_block_tokens: u32,
    /// Attend mode of requests that leave it unset: concat (memories prefilled with the
    /// question) or fused (memories' cached key/value states laid in).
    #[arg(long, env = "MEMGPT_GENERATOR_DEFAULT_ATTEND_MODE", default_value = "concat", value_parser = ["concat", "fused"])]
    pub default_attend_mode: String,
    /// Bytes of memory key/value states kept for the fused mode (on the model's device).
    #[arg(long, env = "MEMGPT_GENERATOR_MEMORY_CACHE_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub memory_cache_bytes: u64,
    /// Leading tokens of each cached memory recomputed in place in fused mode, attending to
    /// everything before them (repairs the attention sink each memory computed alone has).
    #[arg(long, env = "MEMGPT_GENERATOR_RECOMPUTE_HEAD_TOKENS", default_value_t = 4)]
    pub recompute_head_tokens: u32,
    /// Share (0 to 1) of each cached memory's remaining tokens also recomputed in fused
    /// mode: the ones whose layer-1 states deviate most from the cached states (CacheBlend).
    /// Every memory token then runs through layer 0 and 1; 0 turns the selection off. The
    /// default is the smallest measured ratio that keeps SQuAD F1 within 1 point of concat and
    /// at least 60% of answers identical with the default model (docs/benchmarks.md); it saves
    /// little time there: lower it for speed.
    #[arg(long, env = "MEMGPT_GENERATOR_RECOMPUTE_RATIO", default_value_t = 0.85, value_parser = parse_ratio)]
    pub recompute_ratio: f32,
    /// Which memory tokens the fused mode recomputes: `query` (the ones the question attends
    /// to most, found by one pass of the question over the laid-in memories) or `deviation`
    /// (the ones whose layer-1 states deviate most from the cached ones, CacheBlend). The
    /// default is the more faithful of the two on the SQuAD subset; the query rule at 0.7 is
    /// about as faithful and somewhat faster to the first token (docs/benchmarks.md).
    #[arg(long, env = "MEMGPT_GENERATOR_RECOMPUTE_RULE", value_enum, default_value_t = RecomputeRule::Deviation)]
    pub recompute_rule: RecomputeRule,
    /// Calibrated attention to memories in fused mode (APE): the question's and the answer's
    /// attention logits on memory tokens are divided by this temperature (1: exact).
    #[arg(long, env = "MEMGPT_GENERATOR_MEMORY_TEMPERATURE", default_value_t = 1.0, value_parser = parse_calibration)]
    pub memory_temperature: f32,
    /// Calibrated attention to memories in fused mode (APE): the memories' share of that
    /// attention is multiplied by this scale before the softmax normalises (1: exact).
    #[arg(long, env = "MEMGPT_GENERATOR_MEMORY_SCALE", default_value_t = 1.0, value_parser = parse_calibration)]
    pub memory_scale: f32,
    /// Directory where the memory-KV cache also keeps states on disk, so a restarted generator
    /// reuses them (lookups go RAM, disk, compute); none when unset. Files are keyed by the
    /// model's weights, the prompt prefix and the memory, and checksummed.
    #[arg(long, env = "MEMGPT_GENERATOR_MEMORY_CACHE_DIR")]
    pub memory_cache_dir: Option<PathBuf>,
    /// Bytes of memory states the disk tier keeps (least recently used first out).
    #[arg(long, env = "MEMGPT_GENERATOR_MEMORY_CACHE_DISK_BYTES", default_value_t = 16 * 1024 * 1024 * 1024)]
    pub memory_cache_disk_bytes: u64,
    /// Most memories per WarmMemories call.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_WARM_MEMORIES", default_value_t = 1024)]
    pub max_warm_memories: usize,
    /// System instruction placed before the memories when the request has no system message.
    #[arg(long, env = "MEMGPT_GENERATOR_MEMORY_INSTRUCTION", default_value = "Answer the question using the passages below when they are relevant.")]
    pub memory_instruction: String,
    /// Largest gRPC message, in bytes, both ways.
    #[arg(long, env = "MEMGPT_GENERATOR_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds in-flight streams get to finish after SIGTERM.
    #[arg(long, env = "MEMGPT_GENERATOR_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// TLS certificate chain (PEM) served on the gRPC port; plaintext when unset.
    #[arg(long, env = "MEMGPT_GENERATOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MEMGPT_GENERATOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are required (mutual TLS); any client when unset.
    #[arg(long, env = "MEMGPT_GENERATOR_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint (plain HTTP); none when unset.
    #[arg(long, env = "MEMGPT_GENERATOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MEMGPT_LOG", default_value = "info")]
    pub log: String,
    /// Log format: text or json.
    #[arg(long, env = "MEMGPT_LOG_FORMAT", default_value = "text")]
    pub log_format: memgpt_telemetry::LogFormat,
}

impl GeneratorConfig {
    /// The model path: `--model`, else the default decoder under the models directory.
    pub fn model_path(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(|| memgpt_models::models_dir(self.models_dir.clone()).join(memgpt_models::DEFAULT_DECODER))
    }

    /// A configuration with every default (tests and embedding).
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["memgpt-generator"])
    }
}

fn parse_calibration(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if crate::validate::MEMORY_CALIBRATION.contains(&v) { Ok(v) } else { Err(format!("{v} is not between 0.25 and 4")) }
}

fn parse_ratio(s: &str) -> Result<f32, String> {
    let r: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&r) { Ok(r) } else { Err(format!("{r} is not between 0 and 1")) }
}
