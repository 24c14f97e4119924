//! The MemGPT generator service: a llama-family decoder (crates/models) on its own thread,
//! scheduled with continuous batching, sampled per request and streamed over gRPC.

pub mod config;
pub mod error;
pub mod prompt;
pub mod engine;
pub mod server;
pub mod service;
pub mod validate;

pub use config::GeneratorConfig;
pub use error::{GeneratorError, Result};
pub use server::{serve, SERVICE_NAME};

/// Runs the service as its binary does: telemetry from the configuration, listen, serve until
/// SIGTERM or Ctrl-C.
pub async fn run(config: GeneratorConfig) -> anyhow::Result<()> {
    let (log, format, listen) = (config.log.clone(), config.log_format, config.listen);
    memgpt_server_kit::run_service("memgpt-generator", &log, format, listen, |l| serve(config, l, memgpt_server_kit::shutdown_signal()))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
