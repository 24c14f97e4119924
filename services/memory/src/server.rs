//! `serve`: health, reflection and the Memory service on a bound listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use memgpt_proto::memory::v1::memory_server::MemoryServer;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::config::{MemoryConfig, StoreKind};
use crate::error::{MemoryError, Result};
use crate::service::{MemoryService, StoreSlot};
use crate::store::edge::{EdgeStore, EdgeStoreConfig};
use crate::store::qdrant::{QdrantStore, QdrantStoreConfig};
use crate::store::VectorStore;
use crate::validate::Limits;

/// Fully qualified name of the Memory service, as health reports it.
pub const SERVICE_NAME: &str = "memgpt.memory.v1.Memory";

/// Opens the configured store.
pub async fn open_store(config: &MemoryConfig) -> Result<Arc<dyn VectorStore>> {
    Ok(match config.store {
        StoreKind::Edge => {
            let edge = EdgeStoreConfig {
                data_dir: config.data_dir.clone(),
                shards: config.shards as usize,
                dimension: config.dimension as usize,
                max_inflight_writes: config.max_inflight_writes,
                hnsw_ef: config.hnsw_ef,
                optimize_delay: Duration::from_millis(config.optimize_delay_ms),
                segments_per_shard: config.segments_per_shard,
            };
            let store = tokio::task::spawn_blocking(move || EdgeStore::open(edge))
                .await
                .map_err(MemoryError::store)??;
            Arc::new(store)
        }
        StoreKind::Qdrant => Arc::new(
            QdrantStore::connect(QdrantStoreConfig {
                url: config.qdrant_url.clone(),
                api_key: (!config.qdrant_api_key.0.is_empty()).then(|| config.qdrant_api_key.0.clone()),
                collection: config.qdrant_collection.clone(),
                dimension: config.dimension as u64,
                shard_number: config.qdrant_shard_number,
                replication_factor: config.qdrant_replication_factor,
                write_consistency_factor: config.qdrant_write_consistency_factor,
                max_inflight_writes: config.max_inflight_writes,
                hnsw_ef: config.hnsw_ef as u64,
            })
            .await?,
        ),
    })
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Serves until `shutdown` resolves, then drains in-flight calls (within the configured grace)
/// and flushes the store. Fails when the store cannot be opened.
pub async fn serve(
    config: MemoryConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(memgpt_telemetry::lifecycle::LIVENESS_SERVICE, ServingStatus::Serving).await;
    set_health(&reporter, ServingStatus::NotServing).await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(memgpt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(MemoryError::store)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(memgpt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(MemoryError::store)?;

    let slot: StoreSlot = Arc::new(OnceCell::new());
    let limits = Limits {
        dimension: config.dimension as usize,
        max_text_bytes: config.max_text_bytes,
        max_metadata_keys: config.max_metadata_keys,
        max_metadata_bytes: config.max_metadata_bytes,
    };
    let memory = MemoryServer::new(MemoryService::new(Arc::clone(&slot), limits))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    // Open the store while already answering health (NOT_SERVING), then follow its state.
    let open_error: Arc<std::sync::Mutex<Option<MemoryError>>> = Arc::default();
    let (open_failed_tx, mut open_failed) = tokio::sync::watch::channel(false);
    let opener = {
        let config = config.clone();
        let slot = Arc::clone(&slot);
        let reporter = reporter.clone();
        let open_error = Arc::clone(&open_error);
        tokio::spawn(async move {
            let store = match open_store(&config).await {
                Ok(store) => store,
                Err(err) => {
                    tracing::error!(error = %err, "cannot open the store");
                    *open_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                    let _ = open_failed_tx.send(true);
                    return;
                }
            };
            let _ = slot.set(Arc::clone(&store));
            tracing::info!(store = ?config.store, "store open");
            let mut last = None;
            loop {
                let status =
                    if store.healthy().await { ServingStatus::Serving } else { ServingStatus::NotServing };
                if last != Some(status) {
                    tracing::info!(serving = status == ServingStatus::Serving, "health changed");
                    set_health(&reporter, status).await;
                    last = Some(status);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop_signal = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested; draining in-flight calls"),
            _ = open_failed.wait_for(|failed| *failed) => {}
        }
        let _ = stop_tx.send(true);
    };

    // Without TCP_NODELAY, small responses wait on delayed ACKs (about 40 ms each).
    if let Some(addr) = config.metrics_listen {
        memgpt_telemetry::metrics::spawn_endpoint(addr).await.map_err(|e| MemoryError::Store(format!("metrics endpoint {addr}: {e}")))?;
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = memgpt_telemetry::tls::grpc_server(config.tls_cert.as_ref(), config.tls_key.as_ref(), config.tls_client_ca.as_ref())
        .map_err(|e| MemoryError::invalid("tls", e))?
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(memory)
        .serve_with_incoming_shutdown(incoming, stop_signal);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    tokio::select! {
        result = server => result.map_err(|e| MemoryError::Store(format!("gRPC server: {e}")))?,
        _ = async { let _ = stop_rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls outlived the grace period");
        }
    }
    opener.abort();
    let _ = opener.await;
    set_health(&reporter, ServingStatus::NotServing).await;
    if let Some(err) = open_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(err);
    }
    if let Some(store) = slot.get() {
        store.flush().await?;
        tracing::info!("store flushed");
    }
    // Close the store before returning (joins its maintenance thread), unless a call that
    // outlived the grace period still holds it.
    match Arc::try_unwrap(slot).map(OnceCell::into_inner) {
        Ok(Some(store)) => {
            tokio::task::spawn_blocking(move || drop(store)).await.map_err(MemoryError::store)?
        }
        Ok(None) => {}
        Err(_) => tracing::warn!("the store is still in use by a late call; it closes when that ends"),
    }
    Ok(())
}
