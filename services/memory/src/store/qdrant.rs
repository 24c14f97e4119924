//! The `qdrant` store: one collection of a Qdrant server or cluster, through `qdrant-client`.
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
use qdrant_client::Qdrant;
use tokio::sync::Semaphore;

use super::{
    fusion, lexical, Filter, FindQuery, Found, Hit, Lists, Millis, Page, Record, SearchQuery, VectorStore, EXPIRES_KEY,
    NAMESPACE_KEY, VALID_FROM_KEY, VALID_UNTIL_KEY,
};

mod convert;
use convert::{expired_filter, hits, payload_of, record_of, search_filter, string_of, to_filter, uuid_id, valid_filter};
use crate::error::{MemoryError, Result};

/// Configuration of the qdrant store.
#[derive(Clone)]
pub struct QdrantStoreConfig {
    /// gRPC URL, e.g. `http://qdrant:6334`.
    pub url: String,
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
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection", &self.collection)
            .field("shard_number", &self.shard_number)
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

/// A store in a Qdrant collection.
pub struct QdrantStore {
    client: Qdrant,
    config: QdrantStoreConfig,
    write_permits: Arc<Semaphore>,
    /// Metadata keys a Find has asked Qdrant to index (as edge does, on first use).
    indexed: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn unavailable(err: impl std::fmt::Display) -> MemoryError {
    MemoryError::Unavailable(format!("qdrant: {err}"))
}

impl QdrantStore {
    /// Connects and creates the collection and its payload index when missing.
    #[tracing::instrument(skip_all, fields(url = %config.url, collection = %config.collection))]
    pub async fn connect(config: QdrantStoreConfig) -> Result<Self> {
        let mut builder = Qdrant::from_url(&config.url).skip_compatibility_check();
        if let Some(key) = &config.api_key {
            builder = builder.api_key(key.clone());
        }
        let client = builder.build().map_err(unavailable)?;
        let exists = client.collection_exists(&config.collection).await.map_err(unavailable)?;
        if exists {
            let info = client.collection_info(&config.collection).await.map_err(unavailable)?;
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
            client
                .create_collection(
                    CreateCollectionBuilder::new(&config.collection)
                        .vectors_config(VectorParamsBuilder::new(config.dimension, Distance::Cosine))
                        .sparse_vectors_config(sparse)
                        .shard_number(config.shard_number)
                        .replication_factor(config.replication_factor)
                        .write_consistency_factor(config.write_consistency_factor),
                )
                .await
                .map_err(unavailable)?;
            client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(&config.collection, NAMESPACE_KEY, FieldType::Keyword)
                        .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                        .wait(true),
                )
                .await
                .map_err(unavailable)?;
            for key in [VALID_FROM_KEY, VALID_UNTIL_KEY, EXPIRES_KEY] {
                client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(&config.collection, key, FieldType::Integer).wait(true),
                    )
                    .await
                    .map_err(unavailable)?;
            }
            tracing::info!("collection created");
        }
        let write_permits = Arc::new(Semaphore::new(config.max_inflight_writes));
        Ok(Self { client, config, write_permits, indexed: Default::default() })
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
            let request = CreateFieldIndexCollectionBuilder::new(&self.config.collection, &path, FieldType::Keyword);
            if let Err(e) = self.client.create_field_index(request).await {
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
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.config.collection, points).wait(true))
            .await
            .map_err(unavailable)?;
        Ok(n)
    }

    async fn find(&self, query: FindQuery) -> Result<Found> {
        self.index_keywords(&query.filter).await;
        let filter = valid_filter(&query.namespaces, Some(&query.filter), query.as_of, query.now);
        let request = ScrollPointsBuilder::new(&self.config.collection)
            .filter(filter)
            .limit(query.limit as u32 + 1)
            .with_payload(true)
            .with_vectors(false);
        let response = self.client.scroll(request).await.map_err(unavailable)?;
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
        let mut results = self.client.query_batch(request).await.map_err(unavailable)?.result.into_iter();
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
        let response = self
            .client
            .get_points(
                GetPointsBuilder::new(&self.config.collection, points)
                    .with_payload(true)
                    .with_vectors(with_vectors),
            )
            .await
            .map_err(unavailable)?;
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
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.config.collection)
                    .points(PointsIdsList { ids: points })
                    .wait(true),
            )
            .await
            .map_err(unavailable)?;
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
        let response = self.client.count(request).await.map_err(unavailable)?;
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
        let response = self.client.scroll(request).await.map_err(unavailable)?;
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
        self.client.health_check().await.is_ok()
    }

    async fn flush(&self) -> Result<()> {
        // Every write already waited for Qdrant to apply it.
        Ok(())
    }
}

impl QdrantStore {
    async fn delete_matching(&self, filter: QFilter) -> Result<u64> {
        let matching = self
            .client
            .count(CountPointsBuilder::new(&self.config.collection).filter(filter.clone()).exact(true))
            .await
            .map_err(unavailable)?
            .result
            .map(|r| r.count)
            .unwrap_or(0);
        self.client
            .delete_points(DeletePointsBuilder::new(&self.config.collection).points(filter).wait(true))
            .await
            .map_err(unavailable)?;
        Ok(matching)
    }
}
