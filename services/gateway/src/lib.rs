//! The MemGPT gateway: for every question, encode → retrieve → attend → decode → output,
//! over a pool of memory services and a pool of generator services.

pub mod ask;
pub mod auth;
pub mod backends;
pub mod chat;
pub mod chunk;
pub mod config;
pub mod error;
pub mod forward;
pub mod memory_ops;
pub mod pipeline;
pub mod server;
pub mod service;

pub use config::GatewayConfig;
pub use error::{GatewayError, Result};
pub use server::{serve, serve_with, Options, SERVICE_NAME};

/// Runs the service as its binary does: telemetry from the configuration, listen, serve until
/// SIGTERM or Ctrl-C.
pub async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    let (log, format, listen) = (config.log.clone(), config.log_format, config.listen);
    memgpt_server_kit::run_service("memgpt-gateway", &log, format, listen, |l| serve(config, l, memgpt_server_kit::shutdown_signal()))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
