//! Command-line and environment configuration (`MEMGPT_MEMORY_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Which vector store backs the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// Qdrant Edge shards in-process, on local disk.
    Edge,
    /// A Qdrant server or cluster.
    Qdrant,
}

/// A secret whose value never appears in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// Configuration of `memgpt-memory`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "memgpt-memory", version, about = "The MemGPT memory service")]
pub struct MemoryConfig {
    /// Address to listen on.
    #[arg(long, env = "MEMGPT_MEMORY_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,
    /// Vector store.
    #[arg(long, env = "MEMGPT_MEMORY_STORE", value_enum, default_value = "edge")]
    pub store: StoreKind,
    /// Data directory of the edge store.
    #[arg(long, env = "MEMGPT_MEMORY_DATA_DIR", default_value = "data/memory")]
    pub data_dir: PathBuf,
    /// Edge shards of a new data directory (default 2); an existing one keeps the count it was
    /// created with, and another count given here is refused.
    #[arg(long, env = "MEMGPT_MEMORY_SHARDS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: Option<u32>,
    /// Vector dimension (recorded in the store; a restart with another is refused).
    #[arg(long, env = "MEMGPT_MEMORY_DIMENSION", default_value_t = 384, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub dimension: u32,
    /// HNSW beam width at search time (at least top_k). 32 gives recall@10 0.996 on the
    /// benchmark's embedding-like data; raise it for harder data (docs/benchmarks.md).
    #[arg(long, env = "MEMGPT_MEMORY_HNSW_EF", default_value_t = 32)]
    pub hnsw_ef: usize,
    /// Segments the edge optimizer aims for per shard (fewer: faster search, slower merges).
    #[arg(long, env = "MEMGPT_MEMORY_SEGMENTS_PER_SHARD", default_value_t = 1)]
    pub segments_per_shard: usize,
    /// Quiet milliseconds after the last write before the edge optimizer (index build) runs.
    #[arg(long, env = "MEMGPT_MEMORY_OPTIMIZE_DELAY_MS", default_value_t = 500)]
    pub optimize_delay_ms: u64,
    /// Qdrant URLs (gRPC port), for `--store qdrant`: one server, or several nodes of one
    /// cluster, comma-separated; a call that one node does not answer goes to the next.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_URL", value_delimiter = ',', default_value = "http://127.0.0.1:6334")]
    pub qdrant_url: Vec<String>,
    /// Longest wait, in milliseconds, for one call to one Qdrant node before the next is tried.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub qdrant_timeout_ms: u64,
    /// Qdrant API key.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_API_KEY", default_value = "", hide_env_values = true)]
    pub qdrant_api_key: Secret,
    /// Qdrant collection.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_COLLECTION", default_value = "memgpt")]
    pub qdrant_collection: String,
    /// Shards of the Qdrant collection, when it is created.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_SHARD_NUMBER", default_value_t = 6)]
    pub qdrant_shard_number: u32,
    /// Replicas of each shard, when the collection is created.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_REPLICATION_FACTOR", default_value_t = 2)]
    pub qdrant_replication_factor: u32,
    /// Replicas that must acknowledge a write, when the collection is created.
    #[arg(long, env = "MEMGPT_MEMORY_QDRANT_WRITE_CONSISTENCY_FACTOR", default_value_t = 1)]
    pub qdrant_write_consistency_factor: u32,
    /// Seconds between sweeps that delete records whose expiry (a TTL) has passed; 0: none.
    #[arg(long, env = "MEMGPT_MEMORY_EXPIRY_SWEEP_SECS", default_value_t = 60)]
    pub expiry_sweep_secs: u64,
    /// Largest gRPC message, in bytes, both ways.
    #[arg(long, env = "MEMGPT_MEMORY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Writes in flight before RESOURCE_EXHAUSTED.
    #[arg(long, env = "MEMGPT_MEMORY_MAX_INFLIGHT_WRITES", default_value_t = 32)]
    pub max_inflight_writes: usize,
    /// Longest record text, in bytes.
    #[arg(long, env = "MEMGPT_MEMORY_MAX_TEXT_BYTES", default_value_t = 64 * 1024)]
    pub max_text_bytes: usize,
    /// Most metadata keys per record.
    #[arg(long, env = "MEMGPT_MEMORY_MAX_METADATA_KEYS", default_value_t = 64)]
    pub max_metadata_keys: usize,
    /// Most metadata bytes per record.
    #[arg(long, env = "MEMGPT_MEMORY_MAX_METADATA_BYTES", default_value_t = 16 * 1024)]
    pub max_metadata_bytes: usize,
    /// Seconds in-flight calls get to finish after SIGTERM.
    #[arg(long, env = "MEMGPT_MEMORY_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// TLS certificate chain (PEM) served on the gRPC port; plaintext when unset.
    #[arg(long, env = "MEMGPT_MEMORY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "MEMGPT_MEMORY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are required (mutual TLS); any client when unset.
    #[arg(long, env = "MEMGPT_MEMORY_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint (plain HTTP); none when unset.
    #[arg(long, env = "MEMGPT_MEMORY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MEMGPT_LOG", default_value = "info")]
    pub log: String,
    /// Log format: text or json.
    #[arg(long, env = "MEMGPT_LOG_FORMAT", default_value = "text")]
    pub log_format: memgpt_telemetry::LogFormat,
}

impl MemoryConfig {
    /// A configuration with every default, as the binary would take it with no flags
    /// (environment included); the all-in-one stack and tests set fields on it.
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["memgpt-memory"])
    }
}
