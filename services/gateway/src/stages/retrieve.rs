//! Retrieve: the question searched in all its namespaces at once (its vector, its words, or
//! both fused, as the request's ranking says): one memory search ranks the namespaces'
//! records together, so a hybrid score means the same whichever namespace a hit comes from.

use memgpt_proto::memory::v1 as mem;
use tracing::Instrument;

use crate::clients::MemoryClient;
use crate::error::Result;
use crate::trace::Trace;

/// A memory found for a question.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// Namespace it came from.
    pub namespace: String,
    /// The hit.
    pub hit: mem::Hit,
    /// 1: found by the search; n > 1: a fact reached by following n - 1 edges.
    pub hop: u32,
    /// For hop > 1: the id of the fact that led here.
    pub via: String,
    /// For hop > 1: the entity key followed.
    pub via_entity: String,
    /// For hop > 1: the index, among the question's hits, of the fact that led here.
    pub from: Option<usize>,
    /// Whether hops were followed from it (a fact then reads as a path, even alone).
    pub walked: bool,
}

impl Retrieved {
    /// The document a chunk belongs to (its `document_id` metadata, else the id before `#`).
    pub fn document_id(&self) -> String {
        self.hit.metadata.get("document_id").cloned().unwrap_or_else(|| self.hit.id.split('#').next().unwrap_or_default().to_string())
    }
}

/// What to retrieve (checked by `crate::validate`).
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The question's vector (empty for a sparse-only ranking).
    pub vector: Vec<f32>,
    /// The question's text, for the BM25 list.
    pub text: &'a str,
    /// How to rank.
    pub retrieval: mem::Retrieval,
    /// Only memories valid at this time (RFC 3339; empty: now).
    pub as_of: &'a str,
    /// Namespaces to search.
    pub namespaces: &'a [String],
    /// Hits to keep overall.
    pub top_k: u32,
    /// Payload filter of every search.
    pub filter: Option<mem::Filter>,
    /// Lowest score kept.
    pub min_score: Option<f32>,
}

/// Whether a ranking needs the question's vector.
pub fn needs_vector(retrieval: &mem::Retrieval) -> bool {
    retrieval.mode != mem::RetrievalMode::Sparse as i32
}

/// Searches every namespace of `query` and merges the hits.
pub async fn retrieve(memory: &MemoryClient, trace: &Trace, query: Query<'_>) -> Result<Vec<Retrieved>> {
    let Query { vector, text, retrieval, as_of, namespaces, top_k, filter, min_score } = query;
    let mode = mem::RetrievalMode::try_from(retrieval.mode).map_or("unknown", |m| m.as_str_name());
    let span = tracing::info_span!("retrieve", namespaces = ?namespaces, top_k, mode, hits = tracing::field::Empty);
    let (first, more) = namespaces.split_first().ok_or_else(|| crate::GatewayError::invalid("namespaces", "names none"))?;
    let req = mem::SearchRequest {
        namespace: first.clone(),
        more_namespaces: more.to_vec(),
        vector,
        top_k,
        filter,
        min_score,
        query_text: text.to_string(),
        retrieval: Some(retrieval),
        as_of: as_of.to_string(),
    };
    let all: Vec<Retrieved> = memory
        .search(trace, req)
        .instrument(span.clone())
        .await?
        .into_iter()
        .map(|hit| Retrieved { namespace: hit.namespace.clone(), hit, hop: 1, via: String::new(), via_entity: String::new(), from: None, walked: false })
        .collect();
    span.record("hits", all.len());
    Ok(all)
}
