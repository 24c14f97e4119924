//! Command-line and environment configuration (`MEMGPT_GATEWAY_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Configuration of `memgpt-gateway`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "memgpt-gateway", version, about = "The MemGPT gateway")]
pub struct GatewayConfig {
    /// Address to listen on.
    #[arg(long, env = "MEMGPT_GATEWAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the OpenAI-compatible HTTP/JSON API (`/v1/chat/completions`,
    /// `/v1/embeddings`, `/v1/models`, `/v1/memories`, `/openapi.json`); none when unset.
    #[arg(long, env = "MEMGPT_GATEWAY_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Largest HTTP request body, in bytes (beyond it 413).
    #[arg(long, env = "MEMGPT_GATEWAY_HTTP_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub http_max_body_bytes: usize,
    /// Memory service endpoints (comma-separated).
    #[arg(long, env = "MEMGPT_GATEWAY_MEMORY", value_delimiter = ',', default_value = "http://127.0.0.1:50052")]
    pub memory: Vec<String>,
    /// Generator service endpoints (comma-separated).
    #[arg(long, env = "MEMGPT_GATEWAY_GENERATOR", value_delimiter = ',', default_value = "http://127.0.0.1:50053")]
    pub generator: Vec<String>,
    /// How generations choose among the generator endpoints: cache-aware (to the one that
    /// holds most of the request's memories' key/value states, as far as the gateway sent
    /// them there, unless its calls in flight exceed the least loaded one's by more than
    /// --generator-load-bound; Remember's warm goes to that one generator) or
    /// least-in-flight (warm goes to every generator).
    #[arg(long, env = "MEMGPT_GATEWAY_GENERATOR_ROUTING", value_enum, default_value = "cache-aware")]
    pub generator_routing: crate::clients::affinity::Routing,
    /// The load bound of cache-aware routing, in calls in flight.
    #[arg(long, env = "MEMGPT_GATEWAY_GENERATOR_LOAD_BOUND", default_value_t = 4)]
    pub generator_load_bound: usize,
    /// Memories remembered per generator for cache-aware routing (the least recently sent
    /// forgotten first; about what a generator's memory-KV cache holds).
    #[arg(long, env = "MEMGPT_GATEWAY_GENERATOR_ROUTING_ENTRIES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub generator_routing_entries: u64,
    /// Encoder folder (default: the default encoder under the models directory).
    #[arg(long, env = "MEMGPT_GATEWAY_ENCODER")]
    pub encoder: Option<PathBuf>,
    /// Models directory (default: `models/` at the repository root).
    #[arg(long, env = "MEMGPT_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Encoder device: auto, cpu or cuda:N.
    #[arg(long, env = "MEMGPT_GATEWAY_DEVICE", default_value = "auto")]
    pub device: String,
    /// Encoder intra-op threads (0: the library's default).
    #[arg(long, env = "MEMGPT_GATEWAY_ENCODER_THREADS", default_value_t = 0)]
    pub encoder_threads: usize,
    /// Encoder compute mode: f32 (exact, the default) or bf16 (bf16 matrix products, f32 norms
    /// and pooling: about 2x faster on CPUs with AVX512-BF16 or AMX, several times slower
    /// elsewhere; retrieval scores differ slightly from f32).
    #[arg(long, env = "MEMGPT_GATEWAY_ENCODER_PRECISION", default_value = "f32", value_parser = ["f32", "bf16"])]
    pub encoder_precision: String,
    /// Texts per encoder pass (concurrent requests are batched up to it).
    #[arg(long, env = "MEMGPT_GATEWAY_ENCODER_BATCH", default_value_t = 32)]
    pub encoder_batch: usize,
    /// Encoder jobs that may wait; beyond it RESOURCE_EXHAUSTED.
    #[arg(long, env = "MEMGPT_GATEWAY_ENCODER_QUEUE", default_value_t = 256)]
    pub encoder_queue: usize,
    /// Most encoder tokens per chunk of a remembered document (special tokens included).
    #[arg(long, env = "MEMGPT_GATEWAY_CHUNK_TOKENS", default_value_t = 256)]
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    #[arg(long, env = "MEMGPT_GATEWAY_CHUNK_OVERLAP", default_value_t = 32)]
    pub chunk_overlap: usize,
    /// Memories retrieved when a request leaves top_k unset.
    #[arg(long, env = "MEMGPT_GATEWAY_DEFAULT_TOP_K", default_value_t = 4)]
    pub default_top_k: u32,
    /// Attend mode of requests that leave it unset: concat or fused (unset: the generator's).
    #[arg(long, env = "MEMGPT_GATEWAY_DEFAULT_ATTEND_MODE", value_parser = ["concat", "fused"])]
    pub default_attend_mode: Option<String>,
    /// Answer style of requests that leave it unset: free (the model's own words) or
    /// extractive (a verbatim span of a memory, with its offsets).
    #[arg(long, env = "MEMGPT_GATEWAY_DEFAULT_ANSWER_STYLE", default_value = "free", value_parser = ["free", "extractive"])]
    pub default_answer_style: String,
    /// Sentences a free answer to a question ends after, when the request's params leave
    /// `max_sentences` unset (0: no limit; summaries and translations are not cut).
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_SENTENCES", default_value_t = 1)]
    pub max_sentences: u32,
    /// Ranking of requests that leave `retrieval` unset: dense (cosine), sparse (BM25) or
    /// hybrid (both, fused). Hybrid ranks best on SciFact (docs/benchmarks.md).
    #[arg(long, env = "MEMGPT_GATEWAY_RETRIEVAL", value_parser = ["dense", "sparse", "hybrid"], default_value = "hybrid")]
    pub retrieval: String,
    /// How hybrid fuses its lists by default: convex (min-max normalised scores, weighted) or
    /// rrf (reciprocal rank). Convex at 0.5 ranks SciFact best (docs/benchmarks.md).
    #[arg(long, env = "MEMGPT_GATEWAY_FUSION", value_parser = ["rrf", "convex"], default_value = "convex")]
    pub fusion: String,
    /// RRF's k by default (at least 1).
    #[arg(long, env = "MEMGPT_GATEWAY_RRF_K", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub rrf_k: u32,
    /// The dense list's weight of a convex fusion by default, in [0, 1].
    #[arg(long, env = "MEMGPT_GATEWAY_DENSE_WEIGHT", default_value_t = 0.5, value_parser = unit_interval)]
    pub dense_weight: f32,
    /// Largest top_k a request may ask for.
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_TOP_K", default_value_t = 100)]
    pub max_top_k: u32,
    /// Most namespaces per request, 1 to 64 (one memory search takes them all, and a chat
    /// turn's session namespace beside them).
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_NAMESPACES", default_value_t = 8, value_parser = namespace_count)]
    pub max_namespaces: usize,
    /// Most documents per Remember (facts included).
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_DOCUMENTS", default_value_t = 256)]
    pub max_documents: usize,
    /// Largest `max_hops` of a question, and `hops` of a Neighbors walk.
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_HOPS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_hops: u32,
    /// Most facts one hop adds to a question (or a Neighbors walk).
    #[arg(long, env = "MEMGPT_GATEWAY_HOP_FANOUT", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub hop_fanout: u64,
    /// Most facts the hops add to one question (or a Neighbors walk) in all.
    #[arg(long, env = "MEMGPT_GATEWAY_HOP_FACTS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub hop_facts: u64,
    /// Longest question or chat message, in bytes.
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_QUESTION_BYTES", default_value_t = 8 * 1024)]
    pub max_question_bytes: usize,
    /// Longest document, in bytes.
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_DOCUMENT_BYTES", default_value_t = 1024 * 1024)]
    pub max_document_bytes: usize,
    /// Largest document given as a file (`content`: PDF, HTML, Markdown), in bytes; its text
    /// is then held to --max-document-bytes.
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_FILE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_file_bytes: usize,
    /// Deadline of the encode stage, in milliseconds.
    #[arg(long, env = "MEMGPT_GATEWAY_ENCODE_TIMEOUT_MS", default_value_t = 10_000)]
    pub encode_timeout_ms: u64,
    /// Deadline of a retrieve call, in milliseconds.
    #[arg(long, env = "MEMGPT_GATEWAY_RETRIEVE_TIMEOUT_MS", default_value_t = 5_000)]
    pub retrieve_timeout_ms: u64,
    /// Deadline of a generation, in milliseconds.
    #[arg(long, env = "MEMGPT_GATEWAY_GENERATE_TIMEOUT_MS", default_value_t = 120_000)]
    pub generate_timeout_ms: u64,
    /// Deadline of a write to memory, in milliseconds.
    #[arg(long, env = "MEMGPT_GATEWAY_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,
    /// Milliseconds between health checks of each endpoint.
    #[arg(long, env = "MEMGPT_GATEWAY_HEALTH_INTERVAL_MS", default_value_t = 1_000)]
    pub health_interval_ms: u64,
    /// Milliseconds between HTTP/2 pings on each backend connection, busy or idle; a ping not
    /// answered within as long again ends the connection and fails its calls UNAVAILABLE. A
    /// partitioned backend, whose packets vanish, is found this way, not only by deadlines.
    #[arg(long, env = "MEMGPT_GATEWAY_BACKEND_KEEPALIVE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub backend_keepalive_ms: u64,
    /// Seconds a chat session may stay idle before its memory is dropped.
    #[arg(long, env = "MEMGPT_GATEWAY_SESSION_IDLE_SECS", default_value_t = 3600)]
    pub session_idle_secs: u64,
    /// API keys file (JSON: [{"key": "...", "namespaces": ["docs", "*"], "rate_per_s": 50}]).
    #[arg(long, env = "MEMGPT_GATEWAY_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// API keys inline, the same JSON as the file (for secrets injected as variables).
    #[arg(long, env = "MEMGPT_GATEWAY_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Serve without authentication (must be asked for explicitly).
    #[arg(long, env = "MEMGPT_AUTH_DISABLED", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_auth: bool,
    /// Largest gRPC message, in bytes, both ways.
    #[arg(long, env = "MEMGPT_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds in-flight calls get to finish after SIGTERM.
    #[arg(long, env = "MEMGPT_GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// CA (PEM) that signed the memory and generator certificates: links to them use TLS
    /// (`https://` endpoints) when set.
    #[arg(long, env = "MEMGPT_GATEWAY_BACKEND_CA")]
    pub backend_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS on the links to memory and generator.
    #[arg(long, env = "MEMGPT_GATEWAY_BACKEND_CERT")]
    pub backend_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS on the links to memory and generator.
    #[arg(long, env = "MEMGPT_GATEWAY_BACKEND_KEY")]
    pub backend_key: Option<PathBuf>,
    /// TLS certificate chain (PEM) served on the gRPC port; plaintext when unset.
    #[arg(long, env = "MEMGPT_GATEWAY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MEMGPT_GATEWAY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are required (mutual TLS); any client when unset.
    #[arg(long, env = "MEMGPT_GATEWAY_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint (plain HTTP); none when unset.
    #[arg(long, env = "MEMGPT_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MEMGPT_LOG", default_value = "info")]
    pub log: String,
    /// Log format: text or json.
    #[arg(long, env = "MEMGPT_LOG_FORMAT", default_value = "text")]
    pub log_format: memgpt_telemetry::LogFormat,
}

/// A number in [0, 1].
fn unit_interval(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(w) if (0.0..=1.0).contains(&w) => Ok(w),
        _ => Err(format!("`{s}` is not a number in [0, 1]")),
    }
}

fn namespace_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a count from 1 to 64")),
    }
}

impl GatewayConfig {
    /// A configuration with every default, as the binary would take it with no flags
    /// (environment included); the all-in-one stack and tests set fields on it.
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["memgpt-gateway"])
    }

    /// `mode`, or the configured default when it is unspecified (0).
    pub fn attend_mode(&self, mode: i32) -> i32 {
        use memgpt_proto::generator::v1::AttendMode;
        match (mode, self.default_attend_mode.as_deref()) {
            (0, Some("concat")) => AttendMode::Concat as i32,
            (0, Some("fused")) => AttendMode::Fused as i32,
            (m, _) => m,
        }
    }

    /// `style`, or the configured default when it is unspecified (0).
    pub fn answer_style(&self, style: i32) -> i32 {
        use memgpt_proto::generator::v1::AnswerStyle;
        match (style, self.default_answer_style.as_str()) {
            (0, "extractive") => AnswerStyle::Extractive as i32,
            (0, _) => AnswerStyle::Free as i32,
            (s, _) => s,
        }
    }

    /// The bounds of a walk over facts.
    pub fn hop_bounds(&self) -> crate::stages::graph::Bounds {
        crate::stages::graph::Bounds { per_hop: self.hop_fanout as usize, total: self.hop_facts as usize }
    }

    /// How requests that leave `retrieval` unset are ranked.
    pub fn default_retrieval(&self) -> memgpt_proto::memory::v1::Retrieval {
        use memgpt_proto::memory::v1::{Fusion, RetrievalMode};
        let mode = match self.retrieval.as_str() {
            "dense" => RetrievalMode::Dense,
            "sparse" => RetrievalMode::Sparse,
            _ => RetrievalMode::Hybrid,
        };
        let fusion = if self.fusion == "convex" { Fusion::Convex } else { Fusion::Rrf };
        memgpt_proto::memory::v1::Retrieval {
            mode: mode as i32,
            fusion: fusion as i32,
            rrf_k: Some(self.rrf_k),
            dense_weight: Some(self.dense_weight),
        }
    }

    /// The encoder's name (its folder's), as Info and the HTTP model list report it.
    pub fn encoder_name(&self) -> String {
        self.encoder_dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "encoder".into())
    }

    /// The encoder folder: `--encoder`, else the default encoder under the models directory.
    pub fn encoder_dir(&self) -> PathBuf {
        self.encoder.clone().unwrap_or_else(|| memgpt_models::models_dir(self.models_dir.clone()).join(memgpt_models::DEFAULT_ENCODER))
    }
}
