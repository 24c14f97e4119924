//! `memgpt-gateway`: parses the configuration and runs [`memgpt_gateway::serve`].

use anyhow::Context;
use clap::Parser;
use memgpt_gateway::GatewayConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = GatewayConfig::parse();
    let _telemetry = memgpt_telemetry::init(&memgpt_telemetry::TelemetryConfig {
        service_name: "memgpt-gateway".into(),
        filter: config.log.clone(),
        format: config.log_format,
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "memgpt-gateway listening");
    memgpt_gateway::serve(config, listener, memgpt_telemetry::shutdown_signal()).await?;
    Ok(())
}
