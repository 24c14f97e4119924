//! The `edge` store: S Qdrant Edge shards in-process under a data directory.
//!
//! Writes go through one journal (see `journal.rs`) and are then applied to the shards in
//! parallel; searches fan out to every shard in parallel and merge the top-k. A maintenance
//! thread runs Qdrant Edge's optimizer (which builds the HNSW index) after writes, off the
//! request path, then checkpoints: it flushes the shards and truncates the journal.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use qdrant_edge::{
    CountRequest, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeSparseVectorParams,
    EdgeVectorParams, Modifier, NamedQuery, PayloadSchemaType, PointId, QueryEnum, ScrollRequest,
    SearchParams, SearchRequest, VectorInternal, WithPayloadInterface, WithVector,
};
use tokio::sync::Semaphore;

use super::journal::{Journal, JournalOp};
use super::{fusion, lexical, Filter, FindQuery, Found, Hit, Lists, Millis, Page, Record, SearchQuery, VectorStore};
use crate::error::{MemoryError, Result};
use meta::{check_meta, write_meta, StoreMeta};
pub use meta::DEFAULT_SHARDS;

mod contents;
mod convert;
mod maintenance;
mod meta;
mod migrate;
mod ops;

/// Configuration of the edge store.
#[derive(Debug, Clone)]
pub struct EdgeStoreConfig {
    /// Data directory; created when missing.
    pub data_dir: PathBuf,
    /// Number of shards for a new directory ([`DEFAULT_SHARDS`] when `None`). An existing
    /// directory keeps the count it was created with; `Some` other count is refused.
    pub shards: Option<usize>,
    /// Vector dimension (fixed when the directory is created).
    pub dimension: usize,
    /// Writes allowed in flight; beyond it writes fail at once with `Overloaded`.
    pub max_inflight_writes: usize,
    /// HNSW beam width at search time.
    pub hnsw_ef: usize,
    /// Quiet time after the last write before the optimizer runs.
    pub optimize_delay: Duration,
    /// Segments the optimizer aims for in each shard (each is searched in turn).
    pub segments_per_shard: usize,
}

const JOURNAL_FILE: &str = "journal.wal";
const SHARDS_DIR: &str = "shards";
pub(crate) struct Shard {
    pub(crate) edge: EdgeShard,
    dirty: AtomicBool,
    /// What the shard is known to hold (see `contents.rs`): read-locked by a search for as
    /// long as it searches, write-locked by a write that widens it while it applies.
    contents: RwLock<contents::Contents>,
}

impl Shard {
    fn contents(&self) -> std::sync::RwLockReadGuard<'_, contents::Contents> {
        self.contents.read().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Inner {
    pub(crate) shards: Vec<Shard>,
    /// The journal; holding its lock also serialises writes, so replay order is apply order.
    journal: Mutex<Journal>,
    write_permits: Arc<Semaphore>,
    config: EdgeStoreConfig,
    /// Metadata keys with payload indexes (or queued for one).
    indexed_keys: Mutex<HashSet<String>>,
    pending_keys: Mutex<Vec<String>>,
    wake: (Mutex<Option<Instant>>, Condvar),
    stop: AtomicBool,
    /// Held while optimizing or checkpointing: the two must never overlap.
    maintenance: Mutex<()>,
}

/// The edge store. Dropping it stops maintenance and checkpoints.
pub struct EdgeStore {
    inner: Arc<Inner>,
    maintenance: Option<std::thread::JoinHandle<()>>,
}

impl EdgeStore {
    /// Opens or creates the store, replays the journal and starts maintenance. Blocking.
    #[tracing::instrument(skip_all, fields(data_dir = %config.data_dir.display(), shards = config.shards))]
    pub fn open(mut config: EdgeStoreConfig) -> Result<Self> {
        let dir = &config.data_dir.clone();
        let io = |e: std::io::Error| MemoryError::DataDir { path: dir.clone(), reason: e.to_string() };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (format, shard_count) = check_meta(dir, &config)?;
        config.shards = Some(shard_count);
        let migrating = format == 1;
        if migrating {
            migrate::set_aside(dir)?;
        } else {
            migrate::clean_up(dir)?;
        }

        let mut shards = Vec::with_capacity(shard_count);
        for i in 0..shard_count {
            let path = dir.join(SHARDS_DIR).join(i.to_string());
            std::fs::create_dir_all(&path).map_err(io)?;
            let edge = open_shard(&path, config.dimension, config.segments_per_shard)?;
            shards.push(Shard { edge, dirty: AtomicBool::new(true), contents: RwLock::new(contents::Contents::unknown()) });
        }
        let (journal, pending) = Journal::open(&dir.join(JOURNAL_FILE))?;
        let indexed: HashSet<String> = shards
            .iter()
            .flat_map(|s| s.edge.info().payload_schema.into_keys())
            .map(|k| k.to_string())
            .collect();
        let inner = Arc::new(Inner {
            shards,
            journal: Mutex::new(journal),
            write_permits: Arc::new(Semaphore::new(config.max_inflight_writes)),
            indexed_keys: Mutex::new(indexed),
            pending_keys: Mutex::new(Vec::new()),
            wake: (Mutex::new(None), Condvar::new()),
            stop: AtomicBool::new(false),
            maintenance: Mutex::new(()),
            config,
        });
        let replayed = pending.len();
        for op in &pending {
            inner.apply(op)?;
        }
        inner.ensure_index(super::NAMESPACE_KEY, PayloadSchemaType::Keyword)?;
        for key in [super::VALID_FROM_KEY, super::VALID_UNTIL_KEY, super::EXPIRES_KEY] {
            inner.ensure_index(key, PayloadSchemaType::Integer)?;
        }
        if migrating {
            migrate::copy_in(&inner, dir)?;
            write_meta(dir, &StoreMeta::current(&inner.config))?;
            migrate::clean_up(dir)?;
        }
        for shard in &inner.shards {
            *shard.contents.write().unwrap_or_else(|p| p.into_inner()) = contents::Contents::survey(&shard.edge)?;
        }
        inner.checkpoint()?;
        tracing::info!(replayed, shards = shard_count, points = inner.total_points(), "edge store open");

        let worker = Arc::clone(&inner);
        let maintenance = std::thread::Builder::new()
            .name("edge-maintenance".into())
            .spawn(move || worker.maintenance_loop())
            .map_err(|e| MemoryError::store(format!("cannot start maintenance thread: {e}")))?;
        inner.notify_write();
        Ok(Self { inner, maintenance: Some(maintenance) })
    }

    /// Runs the optimizer on every shard now and waits for it (benchmarks and tests).
    pub fn optimize_now(&self) -> Result<()> {
        self.inner.run_maintenance(true)
    }

    /// Points in the shards, and how many of them sit in HNSW-indexed segments.
    pub fn index_status(&self) -> (usize, usize) {
        self.inner.shards.iter().fold((0, 0), |(p, i), s| {
            let info = s.edge.info();
            (p + info.points_count, i + info.indexed_vectors_count)
        })
    }

    async fn write(&self, op: JournalOp) -> Result<u64> {
        let permit = Arc::clone(&self.inner.write_permits).try_acquire_owned().map_err(|_| {
            MemoryError::Overloaded { limit: self.inner.config.max_inflight_writes }
        })?;
        let inner = Arc::clone(&self.inner);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            let _permit = permit;
            let applied = {
                let mut journal = inner.journal.lock().unwrap_or_else(|p| p.into_inner());
                journal.append(&op)?;
                inner.apply(&op)
            };
            inner.notify_write();
            applied
        })
        .await
        .map_err(MemoryError::store)?
    }

    /// Runs `f` on every shard in parallel on the blocking pool.
    async fn on_shards<T, F>(&self, f: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&Inner, usize) -> Result<T> + Send + Sync + 'static,
    {
        self.fan_out(f, false).await
    }

    /// As [`Self::on_shards`], with the last shard run on the calling task while the others
    /// run on the blocking pool. Only for work bounded to about a millisecond (a search):
    /// the task's worker is busy meanwhile, but the hand-off to a pool thread and back, and
    /// the worker's parking, were a third of a search's time through gRPC on 2 cores
    /// (docs/benchmarks.md).
    async fn on_shards_inline<T, F>(&self, f: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&Inner, usize) -> Result<T> + Send + Sync + 'static,
    {
        self.fan_out(f, true).await
    }

    async fn fan_out<T, F>(&self, f: F, inline_last: bool) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&Inner, usize) -> Result<T> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let n = self.inner.shards.len();
        let pooled = if inline_last { n.saturating_sub(1) } else { n };
        let tasks: Vec<_> = (0..pooled)
            .map(|i| {
                let inner = Arc::clone(&self.inner);
                let f = Arc::clone(&f);
                let span = tracing::info_span!("shard", shard = i);
                tokio::task::spawn_blocking(move || span.in_scope(|| f(&inner, i)))
            })
            .collect();
        let last = (pooled < n).then(|| tracing::info_span!("shard", shard = pooled).in_scope(|| f(&self.inner, pooled)));
        let mut out = Vec::with_capacity(n);
        for task in futures::future::join_all(tasks).await {
            out.push(task.map_err(MemoryError::store)??);
        }
        out.extend(last.transpose()?);
        Ok(out)
    }
}

impl Drop for EdgeStore {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.wake.1.notify_all();
        if let Some(handle) = self.maintenance.take() {
            let _ = handle.join();
        }
        if let Err(err) = self.inner.checkpoint() {
            tracing::error!(error = %err, "final checkpoint failed; the journal will be replayed");
        }
    }
}

fn open_shard(path: &Path, dimension: usize, segments: usize) -> Result<EdgeShard> {
    let config = EdgeConfig {
        vectors: [(
            String::new(),
            EdgeVectorParams::builder(dimension, qdrant_edge::Distance::Cosine).build(),
        )]
        .into(),
        // BM25: term weights stored, inverse document frequencies from the shard's counts.
        sparse_vectors: [(
            lexical::SPARSE_VECTOR.to_string(),
            EdgeSparseVectorParams::builder().modifier(Modifier::Idf).build(),
        )]
        .into(),
        // int8 scalar quantisation: HNSW traversal on 4x smaller vectors, then rescoring of
        // the candidates with the full vectors (Qdrant's default rescoring).
        optimizers: EdgeOptimizersConfig {
            default_segment_number: Some(segments.max(1)),
            ..Default::default()
        },
        ..Default::default()
    };
    let segments = path.join("segments");
    let has_data = std::fs::read_dir(&segments).map(|mut d| d.next().is_some()).unwrap_or(false);
    let result = if has_data {
        EdgeShard::load(path, Some(config))
    } else {
        EdgeShard::new(path, config)
    };
    result.map_err(|e| MemoryError::DataDir {
        path: path.to_path_buf(),
        reason: format!("cannot open shard: {e}"),
    })
}

#[async_trait]
impl VectorStore for EdgeStore {
    async fn upsert(&self, namespace: &str, records: Vec<Record>) -> Result<u64> {
        self.write(JournalOp::Upsert { namespace: namespace.to_string(), records }).await
    }

    async fn find(&self, query: FindQuery) -> Result<Found> {
        self.inner.queue_indexes(&query.filter);
        let limit = query.limit;
        let query = Arc::new(query);
        let per_shard = self
            .on_shards(move |inner, i| {
                let contents = inner.shards[i].contents();
                let request = ScrollRequest {
                    offset: None,
                    limit: Some(query.limit + 1),
                    filter: contents.filter(&query.namespaces, Some(&query.filter), query.as_of, query.now),
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                };
                let (points, _) = inner.shards[i].edge.scroll(request).map_err(MemoryError::store)?;
                Ok(points.into_iter().map(|p| convert::hit(0.0, p.payload.as_ref())).collect::<Vec<_>>())
            })
            .await?;
        Ok(Found::of(per_shard.into_iter().flatten().collect(), limit))
    }

    async fn search(&self, query: SearchQuery) -> Result<Vec<Hit>> {
        if let Some(filter) = &query.filter {
            self.inner.queue_indexes(filter);
        }
        let depth = query.depth();
        let ef = self.inner.config.hnsw_ef.max(depth);
        // A text of stop words only has no terms: its BM25 list is empty, not searched.
        let sparse_query = query.retrieval.sparse().then(|| lexical::query(&query.text)).filter(|q| !q.indices.is_empty());
        let query = Arc::new(query);
        let per_shard = {
            let query = Arc::clone(&query);
            self.on_shards_inline(move |inner, i| {
                let contents = inner.shards[i].contents();
                let filter = contents.filter(&query.namespaces, query.filter.as_ref(), query.as_of, query.now);
                let request = |query: QueryEnum, params| SearchRequest {
                    query,
                    filter: filter.clone(),
                    params,
                    limit: depth,
                    offset: 0,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: None,
                    score_threshold: None,
                };
                let shard = &inner.shards[i].edge;
                let mut lists = Lists::default();
                if query.retrieval.dense() {
                    let params = Some(SearchParams { hnsw_ef: Some(ef), ..Default::default() });
                    lists.dense = convert::hits(shard.search(request(query.vector.clone().into(), params)).map_err(MemoryError::store)?);
                }
                if let Some(sparse) = &sparse_query {
                    let named = NamedQuery {
                        query: VectorInternal::Sparse(sparse.clone()),
                        using: Some(lexical::SPARSE_VECTOR.to_string()),
                    };
                    lists.sparse = convert::hits(shard.search(request(QueryEnum::Nearest(named), None)).map_err(MemoryError::store)?);
                }
                Ok(lists)
            })
            .await?
        };
        let mut lists = Lists::default();
        for shard in per_shard {
            lists.dense.extend(shard.dense);
            lists.sparse.extend(shard.sparse);
        }
        fusion::best(&mut lists.dense, depth);
        fusion::best(&mut lists.sparse, depth);
        let hits = fusion::rank(query.retrieval, lists, query.top_k, query.min_score);
        tracing::debug!(hits = hits.len(), "search merged");
        Ok(hits)
    }

    async fn get(&self, namespace: &str, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Record>> {
        let inner = Arc::clone(&self.inner);
        let namespace = namespace.to_string();
        tokio::task::spawn_blocking(move || inner.get(&namespace, &ids, with_vectors))
            .await
            .map_err(MemoryError::store)?
    }

    async fn delete_ids(&self, namespace: &str, ids: Vec<String>) -> Result<u64> {
        self.write(JournalOp::DeleteIds { namespace: namespace.to_string(), ids }).await
    }

    async fn delete_filter(&self, namespace: &str, filter: Filter) -> Result<u64> {
        self.inner.queue_indexes(&filter);
        self.write(JournalOp::DeleteFilter { namespace: namespace.to_string(), filter: Some(filter) })
            .await
    }

    async fn count(&self, namespace: Option<&str>) -> Result<u64> {
        let namespace = namespace.map(str::to_string);
        let counts = self
            .on_shards(move |inner, i| {
                let filter = namespace.as_deref().map(|ns| convert::to_filter(ns, None));
                inner.shards[i]
                    .edge
                    .count(CountRequest { filter, exact: true })
                    .map_err(MemoryError::store)
            })
            .await?;
        Ok(counts.into_iter().sum::<usize>() as u64)
    }

    async fn list(
        &self,
        namespace: &str,
        page_size: usize,
        page_token: Option<String>,
        with_vectors: bool,
    ) -> Result<Page> {
        let start = match page_token {
            None => None,
            Some(token) => Some(PointId::Uuid(token.parse().map_err(|_| {
                MemoryError::invalid("page_token", "not a token returned by List")
            })?)),
        };
        let namespace = namespace.to_string();
        let pages = self
            .on_shards(move |inner, i| {
                let request = ScrollRequest {
                    offset: start,
                    limit: Some(page_size + 1),
                    filter: Some(convert::to_filter(&namespace, None)),
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(with_vectors),
                    order_by: None,
                };
                let (records, _) = inner.shards[i].edge.scroll(request).map_err(MemoryError::store)?;
                Ok(records)
            })
            .await?;
        let mut all: Vec<_> = pages.into_iter().flatten().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let next_page_token = if all.len() > page_size {
            Some(all[page_size].id.to_string())
        } else {
            None
        };
        all.truncate(page_size);
        let records = all.into_iter().map(ops::record_from_internal).collect();
        Ok(Page { records, next_page_token })
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<u64> {
        self.write(JournalOp::DeleteFilter { namespace: namespace.to_string(), filter: None }).await
    }

    async fn delete_expired(&self, namespace: Option<&str>, now: Millis) -> Result<u64> {
        self.write(JournalOp::DeleteExpired { namespace: namespace.map(str::to_string), now }).await
    }

    async fn healthy(&self) -> bool {
        !self.inner.stop.load(Ordering::SeqCst)
    }

    async fn flush(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.checkpoint()).await.map_err(MemoryError::store)?
    }
}
