//! `serve`: health, reflection and the Generator service on a bound listener. Health is
//! NOT_SERVING until the model is loaded and a warm-up step ran.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use memgpt_proto::generator::v1::generator_server::GeneratorServer;
use tch::{Device, Kind};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::config::GeneratorConfig;
use crate::error::{GeneratorError, Result};
use crate::scheduler::{Engine, EngineConfig};
use crate::service::{EngineSlot, GeneratorService};

/// Fully qualified name of the Generator service, as health reports it.
pub const SERVICE_NAME: &str = "memgpt.generator.v1.Generator";

/// The engine configuration of a service configuration (device and dtype resolved).
pub fn engine_config(config: &GeneratorConfig) -> Result<EngineConfig> {
    let device = memgpt_models::device::parse_device(&config.device)?;
    let kind = match config.dtype.as_str() {
        "auto" if device == Device::Cpu => Kind::Float,
        "auto" => Kind::BFloat16,
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        other => return Err(GeneratorError::invalid("dtype", format!("`{other}` is not one of auto, f32, bf16"))),
    };
    Ok(EngineConfig {
        model: config.model_path(),
        device,
        kind,
        threads: config.threads,
        max_batch: config.max_batch as usize,
        max_batch_prefill_tokens: config.max_batch_prefill_tokens as usize,
        max_kv_tokens: config.max_kv_tokens,
        max_waiting: config.max_waiting,
        attribution_layers: config.attribution_layers as usize,
        prefix_cache_bytes: config.prefix_cache_bytes,
        prefix_block_tokens: config.prefix_block_tokens as usize,
        memory_cache_bytes: config.memory_cache_bytes,
        recompute_head_tokens: config.recompute_head_tokens as usize,
    })
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Serves until `shutdown` resolves, then drains in-flight streams within the grace period
/// and stops the model thread. Fails when the model cannot be loaded.
pub async fn serve(config: GeneratorConfig, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let engine_config = engine_config(&config)?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(memgpt_telemetry::lifecycle::LIVENESS_SERVICE, ServingStatus::Serving).await;
    set_health(&reporter, ServingStatus::NotServing).await;
    let reflection = |v1: bool| {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(memgpt_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        if v1 {
            builder.build_v1().map(|s| (Some(s), None))
        } else {
            builder.build_v1alpha().map(|s| (None, Some(s)))
        }
        .map_err(|e| GeneratorError::Internal(format!("reflection: {e}")))
    };
    let (reflection_v1, _) = reflection(true)?;
    let (_, reflection_v1alpha) = reflection(false)?;

    let config = Arc::new(config);
    let slot: EngineSlot = Arc::new(OnceCell::new());
    let generator = GeneratorServer::new(GeneratorService::new(Arc::clone(&slot), Arc::clone(&config)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let load_error: Arc<std::sync::Mutex<Option<GeneratorError>>> = Arc::default();
    let (failed_tx, mut failed) = tokio::sync::watch::channel(false);
    let loader = {
        let (slot, reporter, load_error) = (Arc::clone(&slot), reporter.clone(), Arc::clone(&load_error));
        let model = engine_config.model.clone();
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || Engine::start(engine_config)).await {
                Ok(Ok(engine)) => {
                    tracing::info!(model = %engine.info.name, device = %engine.info.device, dtype = %engine.info.dtype, context_length = engine.info.context_length, "model loaded and warmed up");
                    let _ = slot.set(Arc::new(engine));
                    set_health(&reporter, ServingStatus::Serving).await;
                }
                outcome => {
                    let err = match outcome {
                        Ok(Err(e)) => e,
                        Err(e) => GeneratorError::Internal(format!("model loader: {e}")),
                        Ok(Ok(_)) => unreachable!(),
                    };
                    tracing::error!(error = %err, model = %model.display(), "cannot load the model");
                    *load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                    let _ = failed_tx.send(true);
                }
            }
        })
    };

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop_signal = {
        let reporter = reporter.clone();
        async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown requested; draining in-flight streams"),
                // The loader drops its sender when done: only a reported failure stops us.
                () = async { if failed.wait_for(|f| *f).await.is_err() { std::future::pending::<()>().await } } => {}
            }
            set_health(&reporter, ServingStatus::NotServing).await;
            let _ = stop_tx.send(true);
        }
    };
    if let Some(addr) = config.metrics_listen {
        memgpt_telemetry::metrics::spawn_endpoint(addr).await.map_err(|e| GeneratorError::Internal(format!("metrics endpoint {addr}: {e}")))?;
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = memgpt_telemetry::tls::grpc_server(config.tls_cert.as_ref(), config.tls_key.as_ref(), config.tls_client_ca.as_ref())
        .map_err(|e| GeneratorError::invalid("tls", e))?
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(generator)
        .serve_with_incoming_shutdown(incoming, stop_signal);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    tokio::select! {
        result = server => result.map_err(|e| GeneratorError::Internal(format!("gRPC server: {e}")))?,
        _ = async { let _ = stop_rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight streams outlived the grace period; cancelling them");
        }
    }
    let _ = loader.await;
    set_health(&reporter, ServingStatus::NotServing).await;
    if let Some(err) = load_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(err);
    }
    if let Some(engine) = slot.get().cloned() {
        tokio::task::spawn_blocking(move || engine.shutdown(true)).await.map_err(|e| GeneratorError::Internal(format!("engine stop: {e}")))?;
        tracing::info!("model thread stopped");
    }
    Ok(())
}
