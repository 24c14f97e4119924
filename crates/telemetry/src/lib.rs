//! Telemetry for every MemGPT service: one `tracing` subscriber (env filter, text or JSON
//! lines) with an OpenTelemetry layer, so every span has a W3C trace context; spans are
//! exported over OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set, and nowhere (with
//! no error) when it is not. [`propagation`] carries the trace across gRPC calls.
//!
//! `main` calls [`init`] once and keeps the returned [`Telemetry`] until exit; dropping it
//! flushes what is buffered.

pub mod metrics;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
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
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter {
        /// The endpoint configured.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
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

/// Handle that keeps telemetry alive; drop it at exit (flushes spans not yet exported).
#[derive(Debug)]
pub struct Telemetry {
    service_name: String,
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

impl Telemetry {
    /// The service name given at init.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
}

/// The tracer provider of a service: batch export over OTLP/gRPC when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else none (spans still get trace ids).
pub fn provider(service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
    let Some(endpoint) = endpoint else { return Ok(builder.build()) };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| TelemetryError::Exporter { endpoint, reason: e.to_string() })?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// Installs the global subscriber with the service's tracer provider. Logs go to stderr so
/// stdout stays free for command output.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    init_with(config, provider(&config.service_name)?)
}

/// As [`init`], with a given tracer provider (tests use an in-memory exporter).
pub fn init_with(config: &TelemetryConfig, provider: SdkTracerProvider) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_new(&config.filter).map_err(|err| TelemetryError::InvalidFilter {
            directive: config.filter.clone(),
            reason: err.to_string(),
        })?;
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(config.service_name.clone()));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
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
    Ok(Telemetry { service_name: config.service_name.clone(), provider })
}
