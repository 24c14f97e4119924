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
    memgpt_memory::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
