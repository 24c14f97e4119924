//! One way to serve a MemGPT gRPC service, so each service's `server.rs` keeps only what is
//! its own (its store, its model, its pools):
//!
//! - a bound listener (port 0 friendly: the caller binds, the kit serves), TCP_NODELAY;
//! - TLS, and mutual TLS with a client CA ([`tls`]);
//! - a `grpc` span per call continuing the caller's trace, and the gRPC call metrics;
//! - `grpc.health.v1` where the overall service `""` and the service's own name start
//!   NOT_SERVING and follow a readiness task ([`Health`]), and `liveness` stays SERVING;
//! - reflection v1 and v1alpha over every MemGPT contract and health;
//! - a Prometheus endpoint when configured, and an HTTP/JSON face beside gRPC ([`http`]);
//! - background loading of a model or store: the readiness task's error stops the server and
//!   is what [`Server::serve`] returns;
//! - drain on shutdown (SIGTERM in the binaries, see [`lifecycle`]): health goes NOT_SERVING,
//!   in-flight calls get the grace period, then the server stops.

pub mod http;
pub mod lifecycle;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use http::HttpFace;
pub use lifecycle::{run_service, shutdown_signal, Serving, Shutdown, LIVENESS_SERVICE};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

/// Errors of the server kit itself (a service maps them into its own error type).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS files are incomplete or unreadable.
    #[error("invalid `tls`: {0}")]
    Tls(String),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The metrics endpoint could not listen.
    #[error("metrics endpoint {addr}: {reason}")]
    Metrics {
        /// The configured address.
        addr: SocketAddr,
        /// Why it failed.
        reason: String,
    },
    /// The gRPC transport failed.
    #[error("gRPC server: {0}")]
    Transport(String),
}

/// The PEM files of a server's TLS; all `None` serves plaintext.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: Option<PathBuf>,
    /// Private key.
    pub key: Option<PathBuf>,
    /// CA whose certificates clients must present (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// The health a service reports: its readiness task sets it, the kit resets it on drain.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: &'static str,
}

impl Health {
    /// Sets the overall status `""` and the service's own name.
    pub async fn set(&self, serving: bool) {
        self.set_service("", serving).await;
        self.set_service(self.service, serving).await;
    }

    /// Sets the status of one named service (a forwarded API, say).
    pub async fn set_service(&self, name: &str, serving: bool) {
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status(name, status).await;
    }

    /// Follows `probe` every `interval`, setting the status whenever it changes. Never
    /// returns: the kit aborts it at stop.
    pub async fn follow<F, Fut>(&self, interval: Duration, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut last = None;
        loop {
            let serving = probe().await;
            if last != Some(serving) {
                tracing::info!(service = self.service, serving, "health changed");
                self.set(serving).await;
                last = Some(serving);
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// A server in the making: its name, TLS, drain grace and metrics endpoint.
pub struct Server {
    service: &'static str,
    tls: TlsFiles,
    grace: Duration,
    metrics_listen: Option<SocketAddr>,
    health: Health,
    http: Option<HttpFace>,
}

impl Server {
    /// A server of the service named `service` (its fully qualified gRPC name, as health
    /// reports it), plaintext, no grace, no metrics endpoint.
    pub fn new(service: &'static str) -> Self {
        let health = Health { reporter: HealthReporter::new(), service };
        Self { service, tls: TlsFiles::default(), grace: Duration::ZERO, metrics_listen: None, health, http: None }
    }

    /// Serves TLS (and mutual TLS with a client CA) from these files.
    pub fn tls(mut self, tls: TlsFiles) -> Self {
        self.tls = tls;
        self
    }

    /// How long in-flight calls may run on after shutdown is asked for.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serves Prometheus `/metrics` on this address too.
    pub fn metrics(mut self, addr: Option<SocketAddr>) -> Self {
        self.metrics_listen = addr;
        self
    }

    /// Serves an HTTP/JSON face too, under the same drain (see [`http`]).
    pub fn http(mut self, face: Option<HttpFace>) -> Self {
        self.http = face;
        self
    }

    /// The health handle the readiness task drives.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Serves `routes` (with health and reflection) on `listener` until `shutdown` resolves
    /// or `ready` fails, then drains within the grace period. `ready` runs in the background
    /// from the start: it loads what the service needs and sets [`Health`]; it may run on
    /// (following readiness) until the kit aborts it at stop. Returns `ready`'s error when it
    /// failed.
    pub async fn serve<E, R>(self, listener: TcpListener, routes: Routes, ready: R, shutdown: Shutdown) -> Result<(), E>
    where
        R: Future<Output = Result<(), E>> + Send + 'static,
        E: From<ServeError> + Send + 'static,
    {
        let Self { service, tls, grace, metrics_listen, health, http } = self;
        let health_service = HealthServer::new(HealthService::from_health_reporter(health.reporter.clone()));
        health.set_service(LIVENESS_SERVICE, true).await;
        health.set(false).await;
        let reflection_v1 = reflection().build_v1().map_err(|e| ServeError::Reflection(e.to_string()))?;
        let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| ServeError::Reflection(e.to_string()))?;
        let routes = routes.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);
        let mut builder = tonic::transport::Server::builder();
        if let Some(config) = tls::server(tls.cert.as_ref(), tls.key.as_ref(), tls.client_ca.as_ref()).map_err(ServeError::Tls)? {
            builder = builder.tls_config(config).map_err(|e| ServeError::Tls(e.to_string()))?;
        }
        if let Some(addr) = metrics_listen {
            memgpt_telemetry::metrics::spawn_endpoint(addr).await.map_err(|e| ServeError::Metrics { addr, reason: e.to_string() })?;
        }

        let failure: Arc<std::sync::Mutex<Option<E>>> = Arc::default();
        let (failed_tx, mut failed) = tokio::sync::watch::channel(false);
        let background = {
            let failure = Arc::clone(&failure);
            tokio::spawn(async move {
                if let Err(err) = ready.await {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                    let _ = failed_tx.send(true);
                }
            })
        };
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let stop_signal = {
            let health = health.clone();
            async move {
                tokio::select! {
                    () = shutdown => tracing::info!(service, "shutdown requested; draining in-flight calls"),
                    // The task drops its sender when it ends: only a reported failure stops us.
                    () = async { if failed.wait_for(|f| *f).await.is_err() { std::future::pending::<()>().await } } => {}
                }
                health.set(false).await;
                let _ = stop_tx.send(true);
            }
        };
        let http_task = http.map(|face| {
            let mut stop = stop_rx.clone();
            tokio::spawn(http::serve(face, async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        });
        // Without TCP_NODELAY, small responses wait on delayed ACKs (about 40 ms each).
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = builder
            .trace_fn(memgpt_telemetry::propagation::grpc_span)
            .layer(memgpt_telemetry::metrics::GrpcMetricsLayer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop_signal);
        let outcome = tokio::select! {
            result = server => result.map_err(|e| ServeError::Transport(e.to_string())),
            _ = async { let _ = stop_rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
                tracing::warn!(service, grace_secs = grace.as_secs(), "in-flight calls outlived the grace period");
                Ok(())
            }
        };
        if let Some(mut task) = http_task {
            match tokio::time::timeout(grace.max(Duration::from_millis(100)), &mut task).await {
                Ok(Ok(Err(e))) => tracing::error!(service, error = %e, "the HTTP face failed"),
                Err(_) => {
                    tracing::warn!(service, "HTTP requests outlived the grace period");
                    task.abort();
                }
                _ => {}
            }
        }
        background.abort();
        let _ = background.await;
        health.set(false).await;
        if let Some(err) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(err);
        }
        outcome.map_err(E::from)
    }
}

/// Reflection over the MemGPT contracts and health.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(memgpt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
