//! The `VectorStore` domain trait and its types; `edge` and `qdrant` implement it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

pub mod edge;
pub mod fusion;
mod journal;
pub mod lexical;
pub mod qdrant;
pub mod time;

pub use fusion::{Fusion, Retrieval};
pub use time::{Millis, Validity};

/// Payload key of the namespace (a tenant-indexed keyword).
pub const NAMESPACE_KEY: &str = "namespace";
/// Payload key of the record's own id.
pub const ID_KEY: &str = "record_id";
/// Payload key of the text.
pub const TEXT_KEY: &str = "text";
/// Payload object holding the string metadata.
pub const META_KEY: &str = "meta";
/// Payload object holding the metadata values that parse as numbers, for range filters.
pub const NUM_KEY: &str = "num";
/// Payload keys of the validity and expiry times (integer milliseconds, always set: an
/// unbounded end holds `time::MIN` or `time::MAX`, so every condition is one range).
pub const VALID_FROM_KEY: &str = "valid_from";
/// See `VALID_FROM_KEY`.
pub const VALID_UNTIL_KEY: &str = "valid_until";
/// See `VALID_FROM_KEY`.
pub const EXPIRES_KEY: &str = "expires_at";

/// A validated record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Id, unique within the namespace.
    pub id: String,
    /// Embedding of the store's dimension.
    pub vector: Vec<f32>,
    /// Text.
    pub text: String,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it holds, and when it expires.
    pub validity: Validity,
}

/// A hit's place in one ranked list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// 1 = best.
    pub rank: u32,
    /// The list's own score (cosine, or BM25).
    pub score: f32,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The namespace it belongs to.
    pub namespace: String,
    /// Record id (unique within its namespace).
    pub id: String,
    /// The ranking score of the search's mode (cosine, BM25 or fused).
    pub score: f32,
    /// Text.
    pub text: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it holds, and when it expires.
    pub validity: Validity,
    /// Its place in the dense list, if that list found it.
    pub dense: Option<Ranked>,
    /// Its place in the BM25 list, if that list found it.
    pub sparse: Option<Ranked>,
}

/// What a metadata value must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Predicate {
    /// Equal to the string.
    Equals(String),
    /// Equal to one of the strings.
    AnyOf(Vec<String>),
    /// The value as a number lies in the range.
    Range {
        /// Greater than.
        gt: Option<f64>,
        /// Greater than or equal.
        gte: Option<f64>,
        /// Less than.
        lt: Option<f64>,
        /// Less than or equal.
        lte: Option<f64>,
    },
}

/// One condition on a metadata key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Metadata key.
    pub key: String,
    /// What its value must satisfy.
    pub predicate: Predicate,
}

/// All conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// The conditions.
    pub must: Vec<Condition>,
}

/// A validated search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Namespaces searched as one collection (at least one, none repeated).
    pub namespaces: Vec<String>,
    /// Query vector.
    pub vector: Vec<f32>,
    /// Hits wanted.
    pub top_k: usize,
    /// Metadata filter.
    pub filter: Option<Filter>,
    /// Minimum score (of the mode's ranking score).
    pub min_score: Option<f32>,
    /// The query's text (the sparse list's query).
    pub text: String,
    /// Which lists, and how they are fused.
    pub retrieval: Retrieval,
    /// Only records valid at this time.
    pub as_of: Millis,
    /// The time of the request: records expired by then are never returned.
    pub now: Millis,
}

impl SearchQuery {
    /// How deep each list of the search goes: the hits wanted, and for hybrid three times as
    /// many (fusion needs the candidates one list ranks lower than the other).
    pub fn depth(&self) -> usize {
        match self.retrieval {
            Retrieval::Hybrid(_) => (self.top_k * 3).clamp(30, 1000).max(self.top_k),
            _ => self.top_k,
        }
    }
}

/// A validated Find: the records of some namespaces that match a filter, unranked.
#[derive(Debug, Clone)]
pub struct FindQuery {
    /// Namespaces looked in (at least one, none repeated).
    pub namespaces: Vec<String>,
    /// The filter every record found matches.
    pub filter: Filter,
    /// Most records returned.
    pub limit: usize,
    /// Only records valid at this time.
    pub as_of: Millis,
    /// The time of the request: records expired by then are never returned.
    pub now: Millis,
}

/// What a Find returns: hits by (namespace, id), and whether more matched than the limit.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Hits (score 0, no ranks).
    pub hits: Vec<Hit>,
    /// More records matched than the limit.
    pub truncated: bool,
}

impl Found {
    /// Sorts hits by (namespace, id) and keeps `limit`, noting whether any were cut.
    pub fn of(mut hits: Vec<Hit>, limit: usize) -> Self {
        hits.sort_by(|a, b| a.namespace.cmp(&b.namespace).then_with(|| a.id.cmp(&b.id)));
        hits.dedup_by(|a, b| a.namespace == b.namespace && a.id == b.id);
        let truncated = hits.len() > limit;
        hits.truncate(limit);
        for hit in &mut hits {
            hit.score = 0.0;
        }
        Self { hits, truncated }
    }
}

/// The ranked lists one search drew, best first, before fusion.
#[derive(Debug, Default)]
pub struct Lists {
    /// By cosine similarity.
    pub dense: Vec<Hit>,
    /// By BM25.
    pub sparse: Vec<Hit>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// Records of the page.
    pub records: Vec<Record>,
    /// Opaque token of the next page, if any.
    pub next_page_token: Option<String>,
}

/// A vector store holding records per namespace. Implementations are sharded.
#[async_trait]
pub trait VectorStore: Send + Sync + 'static {
    /// Inserts or replaces records; durable when it returns.
    async fn upsert(&self, namespace: &str, records: Vec<Record>) -> Result<u64>;
    /// The top-k records nearest to the query vector.
    async fn search(&self, query: SearchQuery) -> Result<Vec<Hit>>;
    /// The records that match a filter, unranked (a payload lookup).
    async fn find(&self, query: FindQuery) -> Result<Found>;
    /// Records by id, in the order asked; missing ids are left out.
    async fn get(&self, namespace: &str, ids: Vec<String>, with_vectors: bool)
        -> Result<Vec<Record>>;
    /// Deletes records by id; returns how many existed.
    async fn delete_ids(&self, namespace: &str, ids: Vec<String>) -> Result<u64>;
    /// Deletes the records of a namespace that match the filter; returns how many.
    async fn delete_filter(&self, namespace: &str, filter: Filter) -> Result<u64>;
    /// Records in a namespace, or in all namespaces when `None`.
    async fn count(&self, namespace: Option<&str>) -> Result<u64>;
    /// One page of a namespace's records, in a stable order.
    async fn list(
        &self,
        namespace: &str,
        page_size: usize,
        page_token: Option<String>,
        with_vectors: bool,
    ) -> Result<Page>;
    /// Deletes every record of a namespace.
    async fn drop_namespace(&self, namespace: &str) -> Result<u64>;
    /// Deletes the records (of a namespace, or of all) whose expiry is at or before `now`.
    async fn delete_expired(&self, namespace: Option<&str>, now: Millis) -> Result<u64>;
    /// Whether the store can serve requests now (drives health).
    async fn healthy(&self) -> bool;
    /// Makes everything written so far durable and compact (called on shutdown).
    async fn flush(&self) -> Result<()>;
}

/// The point id of a record: a UUIDv5 of (namespace, id), stable across versions and stores.
pub fn point_uuid(namespace: &str, id: &str) -> uuid::Uuid {
    let mut name = Vec::with_capacity(namespace.len() + id.len() + 1);
    name.extend_from_slice(namespace.as_bytes());
    name.push(0);
    name.extend_from_slice(id.as_bytes());
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name)
}

/// The shard of a record: a stable hash of (namespace, id), taken from its point id.
pub fn shard_of(point: &uuid::Uuid, shards: usize) -> usize {
    let bytes = point.as_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&bytes[..8]);
    (u64::from_le_bytes(head) % shards as u64) as usize
}

/// The stored payload of a record, the same in both stores: namespace, id, text, metadata (the
/// numeric values also apart, for range filters) and the validity times.
pub fn payload(namespace: &str, record: &Record) -> serde_json::Value {
    serde_json::json!({
        NAMESPACE_KEY: namespace,
        ID_KEY: record.id,
        TEXT_KEY: record.text,
        META_KEY: record.metadata,
        NUM_KEY: numeric_metadata(&record.metadata),
        VALID_FROM_KEY: record.validity.from_or_min(),
        VALID_UNTIL_KEY: record.validity.until_or_max(),
        EXPIRES_KEY: record.validity.expires_or_max(),
    })
}

/// Metadata values that parse as finite numbers, kept beside the strings for range filters.
pub fn numeric_metadata(metadata: &BTreeMap<String, String>) -> BTreeMap<String, f64> {
    metadata
        .iter()
        .filter_map(|(k, v)| v.trim().parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| (k.clone(), n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_and_separate_namespaces() {
        let a = point_uuid("ns-a", "doc#0");
        assert_eq!(a, point_uuid("ns-a", "doc#0"));
        assert_ne!(a, point_uuid("ns-b", "doc#0"));
        // The separator keeps ("a", "bc") and ("ab", "c") apart.
        assert_ne!(point_uuid("a", "bc"), point_uuid("ab", "c"));
        // Pinned value: changing the scheme would orphan every stored record.
        assert_eq!(point_uuid("default", "x").to_string(), "a53a68cc-ad6e-59dd-90fa-411c34a7a6bd");
        assert!(shard_of(&a, 4) < 4);
    }

    #[test]
    fn shards_are_balanced() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&point_uuid("ns", &i.to_string()), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
