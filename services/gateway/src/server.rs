//! `serve`: health, reflection and the Gateway service on a bound listener. Health is SERVING
//! while the encoder is loaded and at least one memory and one generator endpoint is healthy.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use memgpt_models::bert::Precision;
use memgpt_models::encoder::{EncoderConfig, EncoderHandle};
use memgpt_models::tokenizer::TextTokenizer;
use memgpt_proto::gateway::v1::gateway_server::GatewayServer;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::auth::Auth;
use crate::backends::Pool;
use crate::chat::Sessions;
use crate::config::GatewayConfig;
use crate::error::{GatewayError, Result};
use crate::forward::{Forward, Forwarded, GeneratorApi, MemoryApi};
use crate::pipeline::Gateway;
use crate::service::{GatewayService, GatewaySlot};

/// Fully qualified name of the Gateway service, as health reports it.
pub const SERVICE_NAME: &str = "memgpt.gateway.v1.Gateway";

/// The API keys the configuration names (auth off only when asked for).
pub fn auth(config: &GatewayConfig) -> Result<Auth> {
    match (&config.api_keys_file, &config.api_keys, config.no_auth) {
        (_, _, true) => {
            tracing::warn!("authentication is disabled (--no-auth)");
            Ok(Auth::disabled())
        }
        (Some(path), _, false) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| GatewayError::invalid("api_keys_file", format!("cannot read {}: {e}", path.display())))?;
            Auth::from_json(&text, "api_keys_file")
        }
        (None, Some(json), false) => Auth::from_json(json, "api_keys"),
        (None, None, false) => Err(GatewayError::invalid(
            "api_keys",
            "no API keys configured: give --api-keys-file or MEMGPT_GATEWAY_API_KEYS, or --no-auth to serve without authentication",
        )),
    }
}

fn serving(ok: bool) -> ServingStatus {
    if ok {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// How the gateway serves beyond its own API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also serve the memory and generator APIs on this port, forwarded to the pools (the
    /// all-in-one server); their health follows the pools.
    pub forward_backends: bool,
}

/// Serves until `shutdown` resolves, then drains in-flight calls within the grace period.
pub async fn serve(config: GatewayConfig, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    serve_with(config, listener, shutdown, Options::default()).await
}

/// [`serve`] with [`Options`].
pub async fn serve_with(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: Options,
) -> Result<()> {
    let auth = Arc::new(auth(&config)?);
    let device = memgpt_models::device::parse_device(&config.device)?;
    let links = memgpt_telemetry::tls::client(config.backend_ca.as_ref(), config.backend_cert.as_ref(), config.backend_key.as_ref())
        .map_err(|e| GatewayError::invalid("backend_ca", e))?;
    let memory = Pool::new("memory", "memgpt.memory.v1.Memory", &config.memory, links.as_ref())?;
    let generator = Pool::new("generator", "memgpt.generator.v1.Generator", &config.generator, links.as_ref())?;
    let interval = Duration::from_millis(config.health_interval_ms.max(50));
    memory.spawn_health_checks(interval);
    generator.spawn_health_checks(interval);
    let tokenizer = TextTokenizer::from_file(&config.encoder_dir().join("tokenizer.json"))?.without_truncation()?;

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(memgpt_telemetry::lifecycle::LIVENESS_SERVICE, ServingStatus::Serving).await;
    set_health(&reporter, ServingStatus::NotServing).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(memgpt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let reflection_v1 = reflection.build_v1().map_err(|e| GatewayError::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(memgpt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| GatewayError::Internal(format!("reflection: {e}")))?;

    let config = Arc::new(config);
    let slot: GatewaySlot = Arc::new(OnceCell::new());
    let sessions = Arc::new(Sessions::default());
    let forward_memory = options.forward_backends.then(|| Forward::<MemoryApi>::new(Arc::clone(&memory), Arc::clone(&auth)));
    let forward_generator =
        options.forward_backends.then(|| Forward::<GeneratorApi>::new(Arc::clone(&generator), Arc::clone(&auth)));
    let service = GatewayServer::new(GatewayService::new(Arc::clone(&slot), auth, Arc::clone(&sessions)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let precision = config.encoder_precision.parse::<Precision>()?;
    let encoder = EncoderHandle::spawn(EncoderConfig {
        dir: config.encoder_dir(),
        device,
        precision,
        batch_size: config.encoder_batch,
        queue: config.encoder_queue,
        threads: config.encoder_threads,
    });
    let watcher = {
        let (slot, reporter, config) = (Arc::clone(&slot), reporter.clone(), Arc::clone(&config));
        tokio::spawn(async move {
            if let Err(e) = encoder.wait_ready().await {
                tracing::error!(error = %e, "the encoder did not load");
                return;
            }
            let gw = Arc::new(Gateway { config: Arc::clone(&config), encoder, tokenizer, memory, generator });
            Sessions::spawn_expiry(Arc::clone(&gw), sessions, Duration::from_secs(config.session_idle_secs.max(1)));
            let _ = slot.set(Arc::clone(&gw));
            let mut last = None;
            loop {
                let (m, g) = (gw.memory.any_healthy(), gw.generator.any_healthy());
                if last != Some((m, g)) {
                    tracing::info!(serving = m && g, memory = m, generator = g, "health changed");
                    set_health(&reporter, serving(m && g)).await;
                    if options.forward_backends {
                        reporter.set_service_status(MemoryApi::NAME, serving(m)).await;
                        reporter.set_service_status(GeneratorApi::NAME, serving(g)).await;
                    }
                    last = Some((m, g));
                }
                tokio::time::sleep(interval).await;
            }
        })
    };

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop_signal = {
        let reporter = reporter.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight calls");
            set_health(&reporter, ServingStatus::NotServing).await;
            let _ = stop_tx.send(true);
        }
    };
    if let Some(addr) = config.metrics_listen {
        memgpt_telemetry::metrics::spawn_endpoint(addr).await.map_err(|e| GatewayError::Internal(format!("metrics endpoint {addr}: {e}")))?;
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = memgpt_telemetry::tls::grpc_server(config.tls_cert.as_ref(), config.tls_key.as_ref(), config.tls_client_ca.as_ref())
        .map_err(|e| GatewayError::invalid("tls", e))?
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .add_optional_service(forward_memory)
        .add_optional_service(forward_generator)
        .serve_with_incoming_shutdown(incoming, stop_signal);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    tokio::select! {
        result = server => result.map_err(|e| GatewayError::Internal(format!("gRPC server: {e}")))?,
        _ = async { let _ = stop_rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls outlived the grace period");
        }
    }
    watcher.abort();
    let _ = watcher.await;
    set_health(&reporter, ServingStatus::NotServing).await;
    Ok(())
}
