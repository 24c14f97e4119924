//! `serve`: the Generator service on a bound listener (the server kit does health,
//! reflection, TLS and the drain). Health is NOT_SERVING until the model is loaded and a
//! warm-up step ran.

use std::sync::Arc;
use std::time::Duration;

use memgpt_proto::generator::v1::generator_server::GeneratorServer;
use tch::{Device, Kind};
use memgpt_server_kit::{Server, Serving, Shutdown, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use crate::config::GeneratorConfig;
use crate::error::{GeneratorError, Result};
use crate::engine::{Engine, EngineConfig};
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
        extractive_focus: config.extractive_focus,
        prefix_cache_bytes: config.prefix_cache_bytes,
        prefix_block_tokens: config.prefix_block_tokens as usize,
        memory_cache_bytes: config.memory_cache_bytes,
        recompute_head_tokens: config.recompute_head_tokens as usize,
        memory_cache_dir: config.memory_cache_dir.clone(),
        memory_cache_disk_bytes: config.memory_cache_disk_bytes,
    })
}

/// Serves until `shutdown` resolves, then drains in-flight streams within the grace period
/// and stops the model thread. Fails when the model cannot be loaded.
#[inline(never)]
pub fn serve(config: GeneratorConfig, listener: TcpListener, shutdown: Shutdown) -> Serving<GeneratorError> {
    Box::pin(run(config, listener, shutdown))
}

async fn run(config: GeneratorConfig, listener: TcpListener, shutdown: Shutdown) -> Result<()> {
    let server = Server::new(SERVICE_NAME)
        .tls(TlsFiles { cert: config.tls_cert.clone(), key: config.tls_key.clone(), client_ca: config.tls_client_ca.clone() })
        .grace(Duration::from_secs(config.shutdown_grace_secs))
        .metrics(config.metrics_listen);
    let engine_config = engine_config(&config)?;
    let config = Arc::new(config);
    let slot: EngineSlot = Arc::new(OnceCell::new());
    let generator = GeneratorServer::new(GeneratorService::new(Arc::clone(&slot), Arc::clone(&config)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let ready = {
        let (slot, health) = (Arc::clone(&slot), server.health());
        let model = engine_config.model.clone();
        async move {
            let loaded = tokio::task::spawn_blocking(move || Engine::start(engine_config))
                .await
                .map_err(|e| GeneratorError::Internal(format!("model loader: {e}")))
                .and_then(|engine| engine);
            let engine = loaded.inspect_err(|err| tracing::error!(error = %err, model = %model.display(), "cannot load the model"))?;
            tracing::info!(model = %engine.info.name, device = %engine.info.device, dtype = %engine.info.dtype, context_length = engine.info.context_length, "model loaded and warmed up");
            let _ = slot.set(Arc::new(engine));
            health.set(true).await;
            Ok::<(), GeneratorError>(())
        }
    };
    server.serve(listener, tonic::service::Routes::new(generator), ready, shutdown).await?;
    if let Some(engine) = slot.get().cloned() {
        tokio::task::spawn_blocking(move || engine.shutdown(true)).await.map_err(|e| GeneratorError::Internal(format!("engine stop: {e}")))?;
        tracing::info!("model thread stopped");
    }
    Ok(())
}
