//! Telemetry for every MemGPT service: one `tracing` subscriber (env filter, text or JSON).
//!
//! `main` calls [`init`] once and keeps the returned [`Telemetry`] until exit; dropping it
//! flushes what is buffered.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter directive does not parse.
    #[error("invalid log filter `{directive}`: {reason}")]
    InvalidFilter {
        /// The directive given.
        directive: String,
        /// Why it was refused.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Output format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}` (expected text or json)")),
        }
    }
}

/// Telemetry configuration, filled from the service's command line.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Service name, recorded on every span.
    pub service_name: String,
    /// `tracing` env-filter directive, e.g. `info,memgpt_memory=debug`.
    pub filter: String,
    /// Line format.
    pub format: LogFormat,
}

/// Handle that keeps telemetry alive; drop it at exit.
#[derive(Debug)]
pub struct Telemetry {
    service_name: String,
}

impl Telemetry {
    /// The service name given at init.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
}

/// Installs the global subscriber. Logs go to stderr so stdout stays free for command output.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_new(&config.filter).map_err(|err| TelemetryError::InvalidFilter {
            directive: config.filter.clone(),
            reason: err.to_string(),
        })?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { service_name: config.service_name.clone() })
}

/// Resolves on SIGTERM or Ctrl-C: the signal every service drains on.
pub async fn shutdown_signal() {
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
