//! The `qdrant` store: one collection of a Qdrant server or cluster, through `qdrant-client`,
//! failing over between the cluster's nodes (`nodes.rs`).
//!
//! The collection is created when missing, with the configured shard number, replication factor
//! and write consistency factor; tenants are separated by a tenant-indexed `namespace` payload
//! field (Qdrant's multitenancy). String ids map to UUIDv5 point ids; the id is kept in the
//! payload. Writes use `wait=true`, so an acknowledged write is applied and in Qdrant's WAL.
//! Beside the unnamed dense vector every point has the named sparse vector `bm25` (Qdrant's
//! IDF modifier), and validity times in integer-indexed payload fields; a collection made by
//! an older version, without them, is refused with what to do.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    self as q, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter as QFilter,
    GetPointsBuilder, KeywordIndexParamsBuilder, Modifier, NamedVectors, PointId, PointStruct,
    PointsIdsList, Query, QueryPointsBuilder, ScrollPointsBuilder, SearchParamsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector,
    VectorInput, VectorParamsBuilder,
};
use tokio::sync::Semaphore;

use super::{
    fusion, lexical, Filter, FindQuery, Found, Hit, Lists, Millis, Page, Record, SearchQuery, VectorStore, EXPIRES_KEY,
    NAMESPACE_KEY, VALID_FROM_KEY, VALID_UNTIL_KEY,
};

mod convert;
mod nodes;
use nodes::Nodes;
use convert::{expired_filter, hits, payload_of, record_of, search_filter, string_of, to_filter, uuid_id, valid_filter};
use crate::error::{MemoryError, Result};

/// Configuration of the qdrant store.
#[derive(Clone)]
pub struct QdrantStoreConfig {
    /// gRPC URLs of the nodes, e.g. `http://qdrant-0:6334`; calls fail over between them.
    pub urls: Vec<String>,
    /// Longest wait for one call to one node before the next node is tried.
    pub timeout: std::time::Duration,
    /// API key, if the cluster wants one.
    pub api_key: Option<String>,
    /// Collection name.
    pub collection: String,
    /// Vector dimension.
    pub dimension: u64,
    /// Shards, when the collection is created.
    pub shard_number: u32,
    /// Replicas per shard, when the collection is created.
    pub replication_factor: u32,
    /// Replicas that acknowledge a write, when the collection is created.
    pub write_consistency_factor: u32,
    /// Writes in flight before `Overloaded`.
    pub max_inflight_writes: usize,
    /// HNSW beam width at search time.
    pub hnsw_ef: u64,
}

impl std::fmt::Debug for QdrantStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStoreConfig")
            .field("urls", &self.urls)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection", &self.collection)
            .field("shard_number", &self.shard_number)
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

/// A store in a Qdrant collection.
pub struct QdrantStore {
    nodes: Nodes,
    config: QdrantStoreConfig,
    write_permits: Arc<Semaphore>,
    /// Metadata keys a Find has asked Qdrant to index (as edge does, on first use).
    indexed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl QdrantStore {
    /// Connects and creates the collection and its payload index when missing.
    #[tracing::instrument(skip_all, fields(urls = ?config.urls, collection = %config.collection))]
    pub async fn connect(config: QdrantStoreConfig) -> Result<Self> {
        let nodes = Nodes::new(&config.urls, config.api_key.as_deref(), config.timeout)?;
        let name = config.collection.as_str();
        let exists = nodes.call("collection_exists", |c| async move { c.collection_exists(name).await }).await?;
        if exists {
            let info = nodes.call("collection_info", |c| async move { c.collection_info(name).await }).await?;
            let size = info
                .result
                .clone()
                .and_then(|r| r.config)
                .and_then(|c| c.params)
                .and_then(|p| p.vectors_config)
                .and_then(|v| match v.config {
                    Some(q::vectors_config::Config::Params(p)) => Some(p.size),
                    _ => None,
                });
            if let Some(size) = size.filter(|s| *s != config.dimension) {
                return Err(MemoryError::Unavailable(format!(
                    "collection `{}` holds vectors of dimension {size}; refusing dimension {}",
                    config.collection, config.dimension
                )));
            }
            let has_bm25 = info
                .result
                .and_then(|r| r.config)
                .and_then(|c| c.params)
                .and_then(|p| p.sparse_vectors_config)
                .is_some_and(|s| s.map.contains_key(lexical::SPARSE_VECTOR));
            if !has_bm25 {
                return Err(MemoryError::Unavailable(format!(
                    "collection `{}` was made by an older memgpt-memory, without the `{}` sparse vector and validity times; \
                     set --qdrant-collection to a new collection and remember the documents again (the old one is left as it is)",
                    config.collection,
                    lexical::SPARSE_VECTOR
                )));
            }
        } else {
            let mut sparse = SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(
                lexical::SPARSE_VECTOR,
                SparseVectorParamsBuilder::default().modifier(Modifier::Idf as i32),
            );
            let create = CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(config.dimension, Distance::Cosine))
                .sparse_vectors_config(sparse)
                .shard_number(config.shard_number)
                .replication_factor(config.replication_factor)
                .write_consistency_factor(config.write_consistency_factor)
                .build();
            nodes.call("create_collection", |c| { let r = create.clone(); async move { c.create_collection(r).await } }).await?;
            let mut indexes = vec![CreateFieldIndexCollectionBuilder::new(name, NAMESPACE_KEY, FieldType::Keyword)
                .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                .wait(true)
                .build()];
            for key in [VALID_FROM_KEY, VALID_UNTIL_KEY, EXPIRES_KEY] {
                indexes.push(CreateFieldIndexCollectionBuilder::new(name, key, FieldType::Integer).wait(true).build());
            }
            for index in indexes {
                nodes.call("create_field_index", |c| { let r = index.clone(); async move { c.create_field_index(r).await } }).await?;
            }
            tracing::info!("collection created");
        }
        let write_permits = Arc::new(Semaphore::new(config.max_inflight_writes));
        Ok(Self { nodes, config, write_permits, indexed: Default::default() })
    }

    /// Asks Qdrant, once per key, for a keyword index on the metadata keys a lookup matches
    /// exactly (an entity key of the graph, a document id); without one a lookup still works,
    /// by scanning.
    async fn index_keywords(&self, filter: &Filter) {
        let keys: Vec<String> = {
            let mut indexed = self.indexed.lock().unwrap_or_else(|p| p.into_inner());
            filter
                .must
                .iter()
                .filter(|c| !matches!(c.predicate, super::Predicate::Range { .. }))
                .map(|c| format!("{}.\"{}\"", super::META_KEY, c.key))
                .filter(|path| indexed.insert(path.clone()))
                .collect()
        };
        for path in keys {
            let request = CreateFieldIndexCollectionBuilder::new(&self.config.collection, &path, FieldType::Keyword).build();
            let created = self.nodes.call("create_field_index", |c| { let r = request.clone(); async move { c.create_field_index(r).await } });
            if let Err(e) = created.await {
                tracing::warn!(key = %path, error = %e, "keyword index not created");
            }
        }
    }

    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.write_permits)
            .try_acquire_owned()
            .map_err(|_| MemoryError::Overloaded { limit: self.config.max_inflight_writes })
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn upsert(&self, namespace: &str, records: Vec<Record>) -> Result<u64> {
        let _permit = self.permit()?;
        let n = records.len() as u64;
        let points = records
            .iter()
            .map(|r| {
                let sparse = lexical::document(&r.text);
                let vectors = NamedVectors::default()
                    .add_vector("", Vector::new_dense(r.vector.clone()))
                    .add_vector(lexical::SPARSE_VECTOR, Vector::new_sparse(sparse.indices, sparse.values));
                Ok(PointStruct::new(uuid_id(namespace, &r.id), vectors, payload_of(namespace, r)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let request = UpsertPointsBuilder::new(&self.config.collection, points).wait(true).build();
        self.nodes.call("upsert_points", |c| { let r = request.clone(); async move { c.upsert_points(r).await } }).await?;
        Ok(n)
    }

    async fn find(&self, query: FindQuery) -> Result<Found> {
        self.index_keywords(&query.filter).await;
        let filter = valid_filter(&query.namespaces, Some(&query.filter), query.as_of, query.now);
        let request = ScrollPointsBuilder::new(&self.config.collection)
            .filter(filter)
            .limit(query.limit as u32 + 1)
            .with_payload(true)
            .with_vectors(false)
            .build();
        let response = self.nodes.call("scroll", |c| { let r = request.clone(); async move { c.scroll(r).await } }).await?;
        let points = response.result.into_iter().map(|p| q::ScoredPoint { id: p.id, payload: p.payload, ..Default::default() }).collect();
        Ok(Found::of(hits(points), query.limit))
    }

    async fn search(&self, query: SearchQuery) -> Result<Vec<Hit>> {
        // Both lists in one call (a query batch), fused here as on edge: each hit keeps its
        // place in each list, and a convex combination is possible.
        let depth = query.depth() as u64;
        let filter = search_filter(&query);
        let mut batch = Vec::new();
        if query.retrieval.dense() {
            let ef = self.config.hnsw_ef.max(depth);
            batch.push(
                QueryPointsBuilder::new(&self.config.collection)
                    .query(query.vector.clone())
                    .limit(depth)
                    .filter(filter.clone())
                    .params(SearchParamsBuilder::default().hnsw_ef(ef))
                    .with_payload(true)
                    .build(),
            );
        }
        // A text of stop words only has no terms: its BM25 list is empty, not searched.
        let sparse = query.retrieval.sparse().then(|| lexical::query(&query.text)).filter(|q| !q.indices.is_empty());
        if let Some(sparse) = &sparse {
            batch.push(
                QueryPointsBuilder::new(&self.config.collection)
                    .query(Query::new_nearest(VectorInput::new_sparse(sparse.indices.clone(), sparse.values.clone())))
                    .using(lexical::SPARSE_VECTOR)
                    .limit(depth)
                    .filter(filter)
                    .with_payload(true)
                    .build(),
            );
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let request = q::QueryBatchPoints {
            collection_name: self.config.collection.clone(),
            query_points: batch,
            ..Default::default()
        };
        let response = self.nodes.call("query_batch", |c| { let r = request.clone(); async move { c.query_batch(r).await } }).await?;
        let mut results = response.result.into_iter();
        let mut lists = Lists::default();
        if query.retrieval.dense() {
            lists.dense = hits(results.next().map(|r| r.result).unwrap_or_default());
        }
        if sparse.is_some() {
            lists.sparse = hits(results.next().map(|r| r.result).unwrap_or_default());
        }
        Ok(fusion::rank(query.retrieval, lists, query.top_k, query.min_score))
    }

    async fn get(&self, namespace: &str, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Record>> {
        let points: Vec<PointId> = ids.iter().map(|id| uuid_id(namespace, id)).collect();
        let request = GetPointsBuilder::new(&self.config.collection, points).with_payload(true).with_vectors(with_vectors).build();
        let response = self.nodes.call("get_points", |c| { let r = request.clone(); async move { c.get_points(r).await } }).await?;
        let mut found: HashMap<String, Record> = response
            .result
            .into_iter()
            .filter(|p| string_of(&p.payload, NAMESPACE_KEY) == namespace)
            .map(|p| {
                let record = record_of(&p.payload, p.vectors);
                (record.id.clone(), record)
            })
            .collect();
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn delete_ids(&self, namespace: &str, ids: Vec<String>) -> Result<u64> {
        let _permit = self.permit()?;
        let existing = self.get(namespace, ids.clone(), false).await?.len() as u64;
        let points: Vec<PointId> = ids.iter().map(|id| uuid_id(namespace, id)).collect();
        let request = DeletePointsBuilder::new(&self.config.collection).points(PointsIdsList { ids: points }).wait(true).build();
        self.nodes.call("delete_points", |c| { let r = request.clone(); async move { c.delete_points(r).await } }).await?;
        Ok(existing)
    }

    async fn delete_filter(&self, namespace: &str, filter: Filter) -> Result<u64> {
        let _permit = self.permit()?;
        self.delete_matching(to_filter(namespace, Some(&filter))).await
    }

    async fn count(&self, namespace: Option<&str>) -> Result<u64> {
        let mut request = CountPointsBuilder::new(&self.config.collection).exact(true);
        if let Some(ns) = namespace {
            request = request.filter(to_filter(ns, None));
        }
        let request = request.build();
        let response = self.nodes.call("count", |c| { let r = request.clone(); async move { c.count(r).await } }).await?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    async fn list(
        &self,
        namespace: &str,
        page_size: usize,
        page_token: Option<String>,
        with_vectors: bool,
    ) -> Result<Page> {
        let mut request = ScrollPointsBuilder::new(&self.config.collection)
            .filter(to_filter(namespace, None))
            .limit(page_size as u32)
            .with_payload(true)
            .with_vectors(with_vectors);
        if let Some(token) = page_token {
            let uuid: uuid::Uuid = token
                .parse()
                .map_err(|_| MemoryError::invalid("page_token", "not a token returned by List"))?;
            request = request.offset(PointId::from(uuid.to_string()));
        }
        let request = request.build();
        let response = self.nodes.call("scroll", |c| { let r = request.clone(); async move { c.scroll(r).await } }).await?;
        let next_page_token = response.next_page_offset.and_then(|p| match p.point_id_options {
            Some(PointIdOptions::Uuid(u)) => Some(u),
            _ => None,
        });
        let records = response.result.into_iter().map(|p| record_of(&p.payload, p.vectors)).collect();
        Ok(Page { records, next_page_token })
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<u64> {
        let _permit = self.permit()?;
        self.delete_matching(to_filter(namespace, None)).await
    }

    async fn delete_expired(&self, namespace: Option<&str>, now: Millis) -> Result<u64> {
        let _permit = self.permit()?;
        self.delete_matching(expired_filter(namespace, now)).await
    }

    async fn healthy(&self) -> bool {
        self.nodes.any_healthy().await
    }

    async fn flush(&self) -> Result<()> {
        // Every write already waited for Qdrant to apply it.
        Ok(())
    }
}

impl QdrantStore {
    async fn delete_matching(&self, filter: QFilter) -> Result<u64> {
        let count = CountPointsBuilder::new(&self.config.collection).filter(filter.clone()).exact(true).build();
        let matching = self.nodes.call("count", |c| { let r = count.clone(); async move { c.count(r).await } }).await?;
        let delete = DeletePointsBuilder::new(&self.config.collection).points(filter).wait(true).build();
        self.nodes.call("delete_points", |c| { let r = delete.clone(); async move { c.delete_points(r).await } }).await?;
        Ok(matching.result.map(|r| r.count).unwrap_or(0))
    }
}
