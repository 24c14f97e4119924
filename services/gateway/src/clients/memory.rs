//! The memory service's calls. Every call is idempotent (upsert by id, get, delete, search),
//! so the pool retries it once on another endpoint when the first is unreachable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use memgpt_proto::memory::v1 as mem;
use mem::memory_client::MemoryClient as Raw;
use tonic::transport::Channel;

use super::{Pool, MAX_MESSAGE_BYTES};
use crate::error::Result;
use crate::trace::Trace;

/// Calls to the memory service.
pub struct MemoryClient {
    pool: Arc<Pool>,
    read: Duration,
    write: Duration,
}

impl MemoryClient {
    /// Calls over `pool`; searches get `read`, writes (and their reads) `write`.
    pub fn new(pool: Arc<Pool>, read: Duration, write: Duration) -> Self {
        Self { pool, read, write }
    }

    /// The endpoints.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    async fn call<M, T, F, Fut>(&self, trace: &Trace, msg: M, timeout: Duration, f: F) -> Result<T>
    where
        M: Clone,
        F: Fn(Raw<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let (resp, _guard) = self
            .pool
            .call(true, |channel| f(Raw::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES), trace.request(msg.clone(), timeout)))
            .await?;
        Ok(resp.into_inner())
    }

    /// The nearest records of one namespace.
    pub async fn search(&self, trace: &Trace, req: mem::SearchRequest) -> Result<Vec<mem::Hit>> {
        Ok(self.call(trace, req, self.read, |mut c, r| async move { c.search(r).await }).await?.hits)
    }

    /// Records matching a filter (a payload lookup), and whether more matched than the limit.
    pub async fn find(&self, trace: &Trace, req: mem::FindRequest) -> Result<(Vec<mem::Hit>, bool)> {
        let found = self.call(trace, req, self.read, |mut c, r| async move { c.find(r).await }).await?;
        Ok((found.hits, found.truncated))
    }

    /// Stores records (waiting until they are durable); returns how many.
    pub async fn upsert(&self, trace: &Trace, namespace: &str, records: Vec<mem::Record>) -> Result<u64> {
        let req = mem::UpsertRequest { namespace: namespace.into(), records, wait: true };
        Ok(self.call(trace, req, self.write, |mut c, r| async move { c.upsert(r).await }).await?.upserted)
    }

    /// The records of `ids` that exist (without vectors).
    pub async fn get(&self, trace: &Trace, namespace: &str, ids: Vec<String>) -> Result<Vec<mem::Record>> {
        let req = mem::GetRequest { namespace: namespace.into(), ids, with_vectors: false };
        Ok(self.call(trace, req, self.write, |mut c, r| async move { c.get(r).await }).await?.records)
    }

    /// Deletes records by id or by filter; returns how many.
    pub async fn delete(&self, trace: &Trace, namespace: &str, ids: Vec<String>, filter: Option<mem::Filter>) -> Result<u64> {
        let req = mem::DeleteRequest { namespace: namespace.into(), ids, filter, expired: false };
        Ok(self.call(trace, req, self.write, |mut c, r| async move { c.delete(r).await }).await?.deleted)
    }

    /// Deletes the records of a namespace whose expiry has passed; returns how many.
    pub async fn delete_expired(&self, trace: &Trace, namespace: &str) -> Result<u64> {
        let req = mem::DeleteRequest { namespace: namespace.into(), ids: Vec::new(), filter: None, expired: true };
        Ok(self.call(trace, req, self.write, |mut c, r| async move { c.delete(r).await }).await?.deleted)
    }

    /// Deletes a whole namespace; returns how many records it held.
    pub async fn drop_namespace(&self, trace: &Trace, namespace: &str) -> Result<u64> {
        let req = mem::DropNamespaceRequest { namespace: namespace.into() };
        Ok(self.call(trace, req, self.write, |mut c, r| async move { c.drop_namespace(r).await }).await?.deleted)
    }
}
