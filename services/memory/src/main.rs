//! `memgpt-memory`: parses the configuration and runs [`memgpt_memory::serve`].

use anyhow::Context;
use clap::Parser;
use memgpt_memory::MemoryConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = MemoryConfig::parse();
    let _telemetry = memgpt_telemetry::init(&memgpt_telemetry::TelemetryConfig {
        service_name: "memgpt-memory".into(),
        filter: config.log.clone(),
        format: config.log_format,
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, store = ?config.store, "memgpt-memory listening");
    memgpt_memory::serve(config, listener, memgpt_telemetry::shutdown_signal()).await?;
    Ok(())
}
