//! Memories over REST, the same flows as the gRPC Remember, Search and Forget:
//!
//! - `POST /v1/memories`: `{"namespace", "documents": [{"id", "text" | "content_base64",
//!   "media_type", "metadata", "valid_from", "valid_until"}], "facts", "warm", "ttl_seconds"}`;
//! - `POST /v1/memories/search`: `{"question", "namespaces", "top_k", "filter", "min_score",
//!   "group_by_document", "retrieval", "as_of"}`;
//! - `POST /v1/memories/forget`: `{"namespace", "document_ids" | "filter" | "expired"}`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use memgpt_proto::gateway::v1 as gw;
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{citation, Filter, Retrieval};
use super::{read_json, ApiError, HttpState};
use crate::flows::memories;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    id: String,
    #[serde(default)]
    text: String,
    /// The file's bytes, base64 (standard alphabet, padded).
    #[serde(default)]
    content_base64: String,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_until: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fact {
    subject: String,
    relation: String,
    object: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_until: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RememberBody {
    namespace: String,
    #[serde(default)]
    documents: Vec<Document>,
    #[serde(default)]
    facts: Vec<Fact>,
    #[serde(default)]
    warm: bool,
    #[serde(default)]
    ttl_seconds: u64,
}

/// `POST /v1/memories`: 200 with each document's result (a document that could not be read
/// is `failed` with why; the others are stored).
pub async fn remember(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let (gw, who, trace) = state.begin(&headers)?;
    let body: RememberBody = read_json(&state, &headers, body).await?;
    let mut documents = Vec::with_capacity(body.documents.len());
    for (i, d) in body.documents.into_iter().enumerate() {
        let content = if d.content_base64.is_empty() {
            Vec::new()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(d.content_base64.as_bytes())
                .map_err(|e| ApiError::invalid(Some(format!("documents[{i}].content_base64")), format!("not base64: {e}")))?
        };
        documents.push(gw::Document { id: d.id, text: d.text, content, media_type: d.media_type, metadata: d.metadata, valid_from: d.valid_from, valid_until: d.valid_until });
    }
    let facts = body
        .facts
        .into_iter()
        .map(|f| gw::Fact { subject: f.subject, relation: f.relation, object: f.object, metadata: f.metadata, valid_from: f.valid_from, valid_until: f.valid_until })
        .collect();
    let req = gw::RememberRequest { namespace: body.namespace, documents, facts, warm: body.warm, ttl_seconds: body.ttl_seconds };
    let out = memories::remember(&gw, &who, &trace, req).await?;
    let results: Vec<Value> = out
        .results
        .iter()
        .map(|r| {
            let status = if r.status == gw::DocumentStatus::Stored as i32 { "stored" } else { "failed" };
            json!({"document_id": r.document_id, "chunks": r.chunks, "status": status, "error": r.error})
        })
        .collect();
    Ok(Json(json!({"results": results, "warmed_chunks": out.warmed_chunks, "trace_id": trace.trace_id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    question: String,
    namespaces: Vec<String>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    min_score: Option<f32>,
    #[serde(default)]
    group_by_document: bool,
    #[serde(default)]
    retrieval: Option<Retrieval>,
    #[serde(default)]
    as_of: String,
}

/// `POST /v1/memories/search`.
pub async fn search(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let (gw, who, trace) = state.begin(&headers)?;
    let b: SearchBody = read_json(&state, &headers, body).await?;
    let req = gw::SearchRequest {
        question: b.question,
        namespaces: b.namespaces,
        top_k: b.top_k,
        filter: b.filter.as_ref().map(|f| f.to_proto("filter")).transpose()?,
        min_score: b.min_score,
        group_by_document: b.group_by_document,
        retrieval: b.retrieval.map(Retrieval::to_proto),
        as_of: b.as_of,
    };
    let out = memories::search(&gw, &who, &trace, req).await?;
    Ok(Json(json!({"citations": out.citations.iter().map(citation).collect::<Vec<_>>(), "trace_id": out.trace_id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetBody {
    namespace: String,
    #[serde(default)]
    document_ids: Vec<String>,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    expired: bool,
}

/// `POST /v1/memories/forget`.
pub async fn forget(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let (gw, who, trace) = state.begin(&headers)?;
    let b: ForgetBody = read_json(&state, &headers, body).await?;
    let filter = b.filter.as_ref().map(|f| f.to_proto("filter")).transpose()?;
    let req = gw::ForgetRequest { namespace: b.namespace, document_ids: b.document_ids, filter, expired: b.expired };
    let forgotten = memories::forget(&gw, &who, &trace, req).await?;
    Ok(Json(json!({"forgotten": forgotten, "trace_id": trace.trace_id})))
}
