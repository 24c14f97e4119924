//! Remember (chunk, encode, upsert; a document again replaces all its old chunks), Forget and
//! Search (encode and retrieve only, optionally one result per document).

use std::collections::HashMap;
use std::time::Duration;

use memgpt_proto::gateway::v1::{
    Citation, DocumentResult, DocumentStatus, ForgetRequest, RememberRequest, RememberResponse, SearchRequest, SearchResponse,
};
use memgpt_proto::generator::v1 as gen;
use memgpt_proto::memory::v1 as mem;
use tracing::Instrument;

use crate::ask::{check_retrieval, check_text, citations};
use crate::auth::Principal;
use crate::chunk;
use crate::error::{GatewayError, Result};
use crate::pipeline::{Gateway, Trace};

const MAX_DOC_ID_BYTES: usize = 200;
const STALE_PAGE: usize = 16;
/// Most ids the memory service takes in one Get or Delete.
const MAX_IDS: usize = 1000;

fn check_namespace(who: &Principal, ns: &str) -> Result<()> {
    if ns.is_empty() {
        return Err(GatewayError::invalid("namespace", "is empty"));
    }
    who.check("namespace", ns)
}

/// Chunks, encodes and stores documents; each is stored whole or not at all.
pub async fn remember(gw: &Gateway, who: &Principal, trace: &Trace, req: RememberRequest) -> Result<RememberResponse> {
    check_namespace(who, &req.namespace)?;
    remember_unchecked(gw, trace, req).await
}

/// As [`remember`], for a namespace the caller already may use (a chat session's).
pub async fn remember_unchecked(gw: &Gateway, trace: &Trace, req: RememberRequest) -> Result<RememberResponse> {
    let c = &gw.config;
    if req.documents.is_empty() || req.documents.len() > c.max_documents {
        return Err(GatewayError::invalid("documents", format!("give 1 to {} documents (got {})", c.max_documents, req.documents.len())));
    }
    let mut seen = HashMap::new();
    for (i, d) in req.documents.iter().enumerate() {
        if d.id.is_empty() || d.id.len() > MAX_DOC_ID_BYTES || d.id.chars().any(|c| c.is_control() || c == '#') {
            return Err(GatewayError::invalid(format!("documents[{i}].id"), format!("must be 1 to {MAX_DOC_ID_BYTES} bytes without control characters or `#`")));
        }
        if let Some(j) = seen.insert(d.id.as_str(), i) {
            return Err(GatewayError::invalid(format!("documents[{i}].id"), format!("`{}` is also documents[{j}]", d.id)));
        }
        if d.text.trim().is_empty() {
            return Err(GatewayError::invalid(format!("documents[{i}].text"), "is empty"));
        }
        if let Some(c) = d.text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(GatewayError::invalid(format!("documents[{i}].text"), format!("holds the control character {c:?}")));
        }
        if d.text.len() > c.max_document_bytes {
            return Err(GatewayError::invalid(format!("documents[{i}].text"), format!("{} bytes exceed the limit of {}", d.text.len(), c.max_document_bytes)));
        }
        if let Some(key) = d.metadata.keys().find(|k| k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control() || c == '"' || c == '\\')) {
            return Err(GatewayError::invalid(format!("documents[{i}].metadata"), format!("key {key:?} must be 1 to 256 bytes without control characters, `\"` or `\\`")));
        }
        for key in ["document_id", "chunk"] {
            if d.metadata.contains_key(key) {
                return Err(GatewayError::invalid(format!("documents[{i}].metadata"), format!("`{key}` is set by the gateway")));
            }
        }
    }
    let span = tracing::info_span!("remember", trace_id = %trace.trace_id, namespace = %req.namespace, documents = req.documents.len(), chunks = tracing::field::Empty);
    async move {
        let mut chunks = Vec::with_capacity(req.documents.len());
        for d in &req.documents {
            chunks.push(chunk::split(&gw.tokenizer, &d.text, c.chunk_tokens, c.chunk_overlap)?);
        }
        let texts: Vec<String> = chunks.iter().flatten().cloned().collect();
        tracing::Span::current().record("chunks", texts.len());
        let mut vectors = gw.encode(texts).await?.into_iter();
        let mut records = Vec::new();
        let mut counts = Vec::with_capacity(req.documents.len());
        for (d, doc_chunks) in req.documents.iter().zip(chunks) {
            counts.push(doc_chunks.len());
            for (n, text) in doc_chunks.into_iter().enumerate() {
                let mut metadata = d.metadata.clone();
                metadata.insert("document_id".into(), d.id.clone());
                metadata.insert("chunk".into(), n.to_string());
                records.push(mem::Record { id: format!("{}#{n}", d.id), vector: vectors.next().unwrap_or_default(), text, metadata });
            }
        }
        // One upsert for every chunk of every document: each document is stored whole or
        // not at all (here: the request as a whole), then chunks left from longer versions go.
        let docs: Vec<(&str, usize)> = req.documents.iter().map(|d| d.id.as_str()).zip(counts.iter().copied()).collect();
        let memories: Vec<gen::Memory> = if req.warm { records.iter().map(|r| gen::Memory { id: r.id.clone(), text: r.text.clone() }).collect() } else { Vec::new() };
        let outcome = match store(gw, trace, &req.namespace, records).await {
            Ok(()) => drop_stale(gw, trace, &req.namespace, &docs).await,
            Err(e) => Err(e),
        };
        let stored = outcome.is_ok();
        let results = match outcome {
            Ok(()) => docs
                .iter()
                .map(|(id, n)| DocumentResult { document_id: id.to_string(), chunks: *n as u32, status: DocumentStatus::Stored as i32, error: String::new() })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "documents not stored");
                docs.iter()
                    .map(|(id, _)| DocumentResult { document_id: id.to_string(), chunks: 0, status: DocumentStatus::Failed as i32, error: e.to_string() })
                    .collect()
            }
        };
        let warmed_chunks = if stored && !memories.is_empty() { warm(gw, trace, memories).await } else { 0 };
        Ok(RememberResponse { results, warmed_chunks })
    }
    .instrument(span)
    .await
}

/// Asks every healthy generator to cache the states of `memories` (fused mode); returns how
/// many every one of them now caches. Failures are logged, not returned: the documents are
/// stored, and a generator computes what it misses on first use.
async fn warm(gw: &Gateway, trace: &Trace, memories: Vec<gen::Memory>) -> u32 {
    const PER_CALL: usize = 256;
    let timeout = Duration::from_millis(gw.config.generate_timeout_ms);
    // States are cached for the system prompt questions are asked with.
    let system = crate::ask::system_prompt(memgpt_proto::gateway::v1::Task::Qa, "");
    let generators = gw.generator.healthy_channels();
    if generators.is_empty() {
        tracing::warn!("no healthy generator to warm memories on");
        return 0;
    }
    let calls = generators.into_iter().map(|(addr, channel)| {
        let (memories, system) = (&memories, &system);
        async move {
            let mut client = gen::generator_client::GeneratorClient::new(channel).max_encoding_message_size(64 << 20);
            let mut cached = 0;
            for part in memories.chunks(PER_CALL) {
                match client.warm_memories(trace.request(gen::WarmMemoriesRequest { memories: part.to_vec(), system: system.clone() }, timeout)).await {
                    Ok(r) => cached += r.into_inner().cached,
                    Err(status) => {
                        tracing::warn!(generator = %addr, code = ?status.code(), error = status.message(), "warming memories failed");
                        return 0;
                    }
                }
            }
            cached
        }
    });
    let warmed = futures::future::join_all(calls).await.into_iter().min().unwrap_or(0);
    tracing::info!(chunks = memories.len(), warmed, "memories warmed");
    warmed
}

async fn store(gw: &Gateway, trace: &Trace, namespace: &str, records: Vec<mem::Record>) -> Result<()> {
    let timeout = Duration::from_millis(gw.config.write_timeout_ms);
    let upsert = mem::UpsertRequest { namespace: namespace.into(), records, wait: true };
    gw.memory_call(|mut m| {
        let req = trace.request(upsert.clone(), timeout);
        async move { m.upsert(req).await }
    })
    .await?;
    Ok(())
}

/// Deletes chunks `doc#n` at and beyond each document's new chunk count.
async fn drop_stale(gw: &Gateway, trace: &Trace, namespace: &str, docs: &[(&str, usize)]) -> Result<()> {
    let timeout = Duration::from_millis(gw.config.write_timeout_ms);
    let mut pending: Vec<(&str, usize)> = docs.to_vec();
    while !pending.is_empty() {
        let ids: Vec<String> = pending.iter().flat_map(|(d, next)| (*next..next + STALE_PAGE).map(move |n| format!("{d}#{n}"))).collect();
        let mut found = Vec::new();
        for page in ids.chunks(MAX_IDS) {
            let get = mem::GetRequest { namespace: namespace.into(), ids: page.to_vec(), with_vectors: false };
            let records = gw
                .memory_call(|mut m| {
                    let req = trace.request(get.clone(), timeout);
                    async move { m.get(req).await }
                })
                .await?
                .records;
            found.extend(records);
        }
        if found.is_empty() {
            return Ok(());
        }
        // A document whose whole page was stale may have more beyond it.
        let full: Vec<(&str, usize)> = pending
            .iter()
            .filter(|(d, _)| found.iter().filter(|r| r.metadata.get("document_id").map(String::as_str) == Some(*d)).count() == STALE_PAGE)
            .map(|(d, next)| (*d, next + STALE_PAGE))
            .collect();
        let stale: Vec<String> = found.into_iter().map(|r| r.id).collect();
        for page in stale.chunks(MAX_IDS) {
            let delete = mem::DeleteRequest { namespace: namespace.into(), ids: page.to_vec(), filter: None };
            gw.memory_call(|mut m| {
                let req = trace.request(delete.clone(), timeout);
                async move { m.delete(req).await }
            })
            .await?;
        }
        pending = full;
    }
    Ok(())
}

/// Deletes documents (all their chunks) or whatever a filter matches.
pub async fn forget(gw: &Gateway, who: &Principal, trace: &Trace, req: ForgetRequest) -> Result<u64> {
    check_namespace(who, &req.namespace)?;
    let filter = match (req.document_ids.is_empty(), req.filter) {
        (false, None) => mem::Filter {
            must: vec![mem::Condition {
                key: "document_id".into(),
                predicate: Some(mem::condition::Predicate::AnyOf(mem::AnyOf { values: req.document_ids })),
            }],
        },
        (true, Some(f)) => f,
        (false, Some(_)) => return Err(GatewayError::invalid("filter", "give document_ids or a filter, not both")),
        (true, None) => return Err(GatewayError::invalid("document_ids", "give document_ids or a filter")),
    };
    let delete = mem::DeleteRequest { namespace: req.namespace.clone(), ids: Vec::new(), filter: Some(filter) };
    let timeout = Duration::from_millis(gw.config.write_timeout_ms);
    let span = tracing::info_span!("forget", trace_id = %trace.trace_id, namespace = %req.namespace);
    let resp = gw
        .memory_call(|mut m| {
            let req = trace.request(delete.clone(), timeout);
            async move { m.delete(req).await }
        })
        .instrument(span)
        .await?;
    Ok(resp.deleted)
}

/// Encodes and retrieves only; with `group_by_document`, one citation per document (its best
/// chunk), documents ranked by that chunk's score.
pub async fn search(gw: &Gateway, who: &Principal, trace: &Trace, req: SearchRequest) -> Result<SearchResponse> {
    check_text(gw, "question", &req.question)?;
    let top_k = check_retrieval(gw, who, &req.namespaces, req.top_k, req.min_score, true)?;
    let span = tracing::info_span!("search", trace_id = %trace.trace_id, top_k, group_by_document = req.group_by_document);
    async move {
        let vector = gw.encode(vec![req.question.clone()]).await?.pop().unwrap_or_default();
        // Grouping needs more chunks than documents asked for.
        let fetch = if req.group_by_document { (top_k * 4).min(gw.config.max_top_k.max(top_k)) } else { top_k };
        let hits = gw.retrieve(trace, vector, &req.namespaces, fetch, req.filter.clone(), req.min_score).await?;
        let mut cited: Vec<Citation> = citations(&hits, &[]);
        if req.group_by_document {
            let mut seen = std::collections::HashSet::new();
            cited.retain(|c| seen.insert((c.namespace.clone(), c.document_id.clone())));
        }
        cited.truncate(top_k as usize);
        Ok(SearchResponse { citations: cited, trace_id: trace.trace_id.clone() })
    }
    .instrument(span)
    .await
}
