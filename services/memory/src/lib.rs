//! The MemGPT memory service: records (vector, text, metadata) per namespace, sharded in Qdrant.
//!
//! `serve` runs the gRPC server on a bound listener until a shutdown future resolves; the
//! binary in `main.rs` only parses the configuration and calls it.

pub mod config;
pub mod error;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;

pub use config::{MemoryConfig, StoreKind};
pub use error::MemoryError;
pub use server::serve;

/// Runs the service as its binary does: telemetry from the configuration, listen, serve until
/// SIGTERM or Ctrl-C.
pub async fn run(config: MemoryConfig) -> anyhow::Result<()> {
    let (log, format, listen) = (config.log.clone(), config.log_format, config.listen);
    memgpt_server_kit::run_service("memgpt-memory", &log, format, listen, |l| serve(config, l, memgpt_server_kit::shutdown_signal()))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
