//! `serve`: the Memory service on a bound listener (the server kit does health, reflection,
//! TLS and the drain); the store opens in the background and health follows its state.

use std::sync::Arc;
use std::time::Duration;

use memgpt_proto::memory::v1::memory_server::MemoryServer;
use memgpt_server_kit::{Server, Serving, Shutdown, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

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
                shards: config.shards.map(|n| n as usize),
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
                urls: config.qdrant_url.clone(),
                timeout: Duration::from_millis(config.qdrant_timeout_ms),
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

/// Deletes expired records every `every` while the store is open.
async fn sweep(store: std::sync::Weak<dyn VectorStore>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(store) = store.upgrade() else { return };
        match store.delete_expired(None, crate::store::time::now()).await {
            Ok(deleted) => {
                crate::service::count_expired(deleted);
                if deleted > 0 {
                    tracing::info!(deleted, "expired records swept");
                }
            }
            Err(err) => tracing::warn!(error = %err, "expiry sweep failed; the next one retries"),
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight calls (within the configured grace)
/// and flushes the store. Fails when the store cannot be opened.
#[inline(never)]
pub fn serve(config: MemoryConfig, listener: TcpListener, shutdown: Shutdown) -> Serving<MemoryError> {
    Box::pin(run(config, listener, shutdown))
}

async fn run(config: MemoryConfig, listener: TcpListener, shutdown: Shutdown) -> Result<()> {
    let server = Server::new(SERVICE_NAME)
        .tls(TlsFiles { cert: config.tls_cert.clone(), key: config.tls_key.clone(), client_ca: config.tls_client_ca.clone() })
        .grace(Duration::from_secs(config.shutdown_grace_secs))
        .metrics(config.metrics_listen);
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
    let ready = {
        let (health, slot, config) = (server.health(), Arc::clone(&slot), config.clone());
        async move {
            let store = open_store(&config).await.inspect_err(|err| tracing::error!(error = %err, "cannot open the store"))?;
            let _ = slot.set(Arc::clone(&store));
            tracing::info!(store = ?config.store, "store open");
            if config.expiry_sweep_secs > 0 {
                tokio::spawn(sweep(Arc::downgrade(&store), Duration::from_secs(config.expiry_sweep_secs)));
            }
            health.follow(Duration::from_secs(1), || store.healthy()).await;
            Ok::<(), MemoryError>(())
        }
    };
    server.serve(listener, tonic::service::Routes::new(memory), ready, shutdown).await?;
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
