//! The gRPC adapter: validate, call the `VectorStore`, convert. Nothing else lives here.

use std::sync::Arc;

use memgpt_proto::memory::v1 as pb;
use memgpt_proto::memory::v1::memory_server::Memory;
use tokio::sync::OnceCell;
use tonic::{Request, Response, Status};

use crate::error::{MemoryError, Result};
use crate::store::{time, Hit, Record, VectorStore};
use crate::validate::{self, DeleteTarget, Limits};

/// The store, set once it is open; requests before that get UNAVAILABLE.
pub type StoreSlot = Arc<OnceCell<Arc<dyn VectorStore>>>;

/// `memgpt.memory.v1.Memory` over a `VectorStore`.
pub struct MemoryService {
    store: StoreSlot,
    limits: Limits,
}

impl MemoryService {
    /// A service over the store that `slot` will hold.
    pub fn new(store: StoreSlot, limits: Limits) -> Self {
        Self { store, limits }
    }

    fn store(&self) -> Result<&Arc<dyn VectorStore>> {
        self.store.get().ok_or_else(|| MemoryError::Unavailable("the store is still opening".into()))
    }
}

fn to_pb_record(r: Record) -> pb::Record {
    pb::Record {
        id: r.id,
        vector: r.vector,
        text: r.text,
        metadata: r.metadata.into_iter().collect(),
        valid_from: time::format(r.validity.valid_from),
        valid_until: time::format(r.validity.valid_until),
        expires_at: time::format(r.validity.expires_at),
    }
}

fn to_pb_hit(h: Hit) -> pb::Hit {
    pb::Hit {
        namespace: h.namespace,
        id: h.id,
        score: h.score,
        text: h.text,
        metadata: h.metadata.into_iter().collect(),
        dense_rank: h.dense.map_or(0, |r| r.rank),
        sparse_rank: h.sparse.map_or(0, |r| r.rank),
        dense_score: h.dense.map(|r| r.score),
        sparse_score: h.sparse.map(|r| r.score),
        valid_from: time::format(h.validity.valid_from),
        valid_until: time::format(h.validity.valid_until),
        expires_at: time::format(h.validity.expires_at),
    }
}

/// Counts expired records deleted (by the sweep or on request).
pub fn count_expired(deleted: u64) {
    memgpt_telemetry::metrics::counter(
        "memgpt_memory_expired_deleted_total",
        "Records deleted because their expiry passed.",
        &[],
    )
    .add(deleted);
}

#[tonic::async_trait]
impl Memory for MemoryService {
    #[tracing::instrument(name = "memory.upsert", skip_all, fields(namespace = %request.get_ref().namespace, records = request.get_ref().records.len()))]
    async fn upsert(&self, request: Request<pb::UpsertRequest>) -> Result<Response<pb::UpsertResponse>, Status> {
        let (namespace, records) = validate::upsert(request.into_inner(), &self.limits)?;
        let upserted = self.store()?.upsert(&namespace, records).await?;
        Ok(Response::new(pb::UpsertResponse { upserted }))
    }

    #[tracing::instrument(name = "memory.search", skip_all, fields(namespace = %request.get_ref().namespace, top_k = request.get_ref().top_k, hits))]
    async fn search(&self, request: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let query = validate::search(request.into_inner(), &self.limits)?;
        let hits = self.store()?.search(query).await?;
        tracing::Span::current().record("hits", hits.len());
        Ok(Response::new(pb::SearchResponse { hits: hits.into_iter().map(to_pb_hit).collect() }))
    }

    #[tracing::instrument(name = "memory.find", skip_all, fields(namespace = %request.get_ref().namespace, limit = request.get_ref().limit, hits))]
    async fn find(&self, request: Request<pb::FindRequest>) -> Result<Response<pb::FindResponse>, Status> {
        let query = validate::find(request.into_inner())?;
        let found = self.store()?.find(query).await?;
        tracing::Span::current().record("hits", found.hits.len());
        Ok(Response::new(pb::FindResponse { hits: found.hits.into_iter().map(to_pb_hit).collect(), truncated: found.truncated }))
    }

    #[tracing::instrument(name = "memory.get", skip_all, fields(namespace = %request.get_ref().namespace, ids = request.get_ref().ids.len()))]
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        validate::name("namespace", &req.namespace)?;
        validate::ids("ids", &req.ids)?;
        let records = self.store()?.get(&req.namespace, req.ids, req.with_vectors).await?;
        Ok(Response::new(pb::GetResponse { records: records.into_iter().map(to_pb_record).collect() }))
    }

    #[tracing::instrument(name = "memory.delete", skip_all, fields(namespace = %request.get_ref().namespace))]
    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let (namespace, target) = validate::delete(request.into_inner())?;
        let store = self.store()?;
        let deleted = match target {
            DeleteTarget::Ids(ids) => store.delete_ids(&namespace, ids).await?,
            DeleteTarget::Filter(filter) => store.delete_filter(&namespace, filter).await?,
            DeleteTarget::Expired(namespace) => {
                let deleted = store.delete_expired(namespace.as_deref(), time::now()).await?;
                count_expired(deleted);
                deleted
            }
        };
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    #[tracing::instrument(name = "memory.count", skip_all, fields(namespace = %request.get_ref().namespace))]
    async fn count(&self, request: Request<pb::CountRequest>) -> Result<Response<pb::CountResponse>, Status> {
        let req = request.into_inner();
        let namespace = if req.namespace.is_empty() {
            None
        } else {
            validate::name("namespace", &req.namespace)?;
            Some(req.namespace.as_str())
        };
        let count = self.store()?.count(namespace).await?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    #[tracing::instrument(name = "memory.list", skip_all, fields(namespace = %request.get_ref().namespace, page_size = request.get_ref().page_size))]
    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let req = request.into_inner();
        validate::name("namespace", &req.namespace)?;
        let page_size = validate::page_size(req.page_size)?;
        let token = (!req.page_token.is_empty()).then_some(req.page_token);
        let page = self.store()?.list(&req.namespace, page_size, token, req.with_vectors).await?;
        Ok(Response::new(pb::ListResponse {
            records: page.records.into_iter().map(to_pb_record).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(name = "memory.drop_namespace", skip_all, fields(namespace = %request.get_ref().namespace))]
    async fn drop_namespace(
        &self,
        request: Request<pb::DropNamespaceRequest>,
    ) -> Result<Response<pb::DropNamespaceResponse>, Status> {
        let req = request.into_inner();
        validate::name("namespace", &req.namespace)?;
        let deleted = self.store()?.drop_namespace(&req.namespace).await?;
        Ok(Response::new(pb::DropNamespaceResponse { deleted }))
    }
}
