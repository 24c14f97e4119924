//! Remember (chunk, encode, upsert; a document again replaces all its old chunks), Forget and
//! Search (encode and retrieve only, optionally one result per document).

use memgpt_proto::gateway::v1::{
    Citation, DocumentResult, DocumentStatus, ForgetRequest, NeighborsRequest, NeighborsResponse, RememberRequest, RememberResponse, SearchRequest, SearchResponse, Task,
};
use memgpt_proto::generator::v1 as gen;
use memgpt_proto::memory::v1 as mem;
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::{GatewayError, Result};
use crate::{chunk, ingest};
use crate::stages::retrieve::{needs_vector, retrieve, Query};
use crate::stages::{attend, graph, output, Gateway};
use crate::trace::Trace;
use crate::validate;

/// Chunk indices probed past a document's new chunk count, per round.
const STALE_PAGE: usize = 16;
/// Most ids the memory service takes in one Get or Delete.
const MAX_IDS: usize = 1000;
/// The longest TTL, 100 years.
const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// The expiry of documents remembered now with `ttl_seconds` (RFC 3339; empty for none).
fn expiry(ttl_seconds: u64) -> Result<String> {
    if ttl_seconds == 0 {
        return Ok(String::new());
    }
    if ttl_seconds > MAX_TTL_SECONDS {
        return Err(GatewayError::invalid("ttl_seconds", format!("{ttl_seconds} exceeds the limit of {MAX_TTL_SECONDS} (100 years)")));
    }
    let at = chrono::Utc::now() + chrono::Duration::seconds(ttl_seconds as i64);
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Chunks, encodes and stores documents; each is stored whole or not at all.
pub async fn remember(gw: &Gateway, who: &Principal, trace: &Trace, req: RememberRequest) -> Result<RememberResponse> {
    validate::namespace(who, &req.namespace)?;
    remember_unchecked(gw, trace, req).await
}

/// As [`remember`], for a namespace the caller already may use (a chat session's).
pub async fn remember_unchecked(gw: &Gateway, trace: &Trace, req: RememberRequest) -> Result<RememberResponse> {
    let c = &gw.config;
    validate::documents(c, &req.documents, req.facts.len())?;
    let facts = validate::facts(&req.facts, &req.documents)?;
    let mut req = req;
    req.documents.extend(facts);
    let expires_at = expiry(req.ttl_seconds)?;
    let span = tracing::info_span!("remember", trace_id = %trace.trace_id, namespace = %req.namespace, documents = req.documents.len(), chunks = tracing::field::Empty);
    async move {
        // Files are read off the async threads (a PDF's text layer takes a while).
        let documents = std::mem::take(&mut req.documents);
        let order: std::collections::HashMap<String, usize> = documents.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect();
        let max_text = c.max_document_bytes;
        let (documents, read) = tokio::task::spawn_blocking(move || {
            let read: Vec<_> = documents.iter().map(|d| ingest::read(d, max_text)).collect();
            (documents, read)
        })
        .await
        .map_err(|e| GatewayError::Internal(format!("reading the documents failed: {e}")))?;
        let mut unread = Vec::new();
        let mut kept = Vec::new();
        for (d, extracted) in documents.into_iter().zip(read) {
            match extracted {
                Ok(x) => kept.push((d, x)),
                Err(reason) => {
                    tracing::warn!(document_id = %d.id, error = %reason, "document not readable; skipped");
                    unread.push(DocumentResult { document_id: d.id, chunks: 0, status: DocumentStatus::Failed as i32, error: reason });
                }
            }
        }
        let mut chunks = Vec::with_capacity(kept.len());
        for (_, x) in &kept {
            let mut pieces = Vec::new();
            for section in &x.sections {
                let texts = chunk::split(&gw.tokenizer, &section.text, c.chunk_tokens, c.chunk_overlap)?;
                pieces.extend(texts.into_iter().map(|t| (t, &section.metadata)));
            }
            chunks.push(pieces);
        }
        let texts: Vec<String> = chunks.iter().flatten().map(|(t, _)| t.clone()).collect();
        tracing::Span::current().record("chunks", texts.len());
        let mut vectors = if texts.is_empty() { Vec::new() } else { gw.encoder.encode(texts).await? }.into_iter();
        let mut records = Vec::new();
        let mut counts = Vec::with_capacity(kept.len());
        for ((d, x), doc_chunks) in kept.iter().zip(chunks) {
            counts.push(doc_chunks.len());
            for (n, (text, section)) in doc_chunks.into_iter().enumerate() {
                let mut metadata = d.metadata.clone();
                metadata.extend(x.metadata.iter().chain(section).cloned());
                metadata.insert("document_id".into(), d.id.clone());
                metadata.insert("chunk".into(), n.to_string());
                records.push(mem::Record {
                    id: format!("{}#{n}", d.id),
                    vector: vectors.next().unwrap_or_default(),
                    text,
                    metadata,
                    valid_from: d.valid_from.clone(),
                    valid_until: d.valid_until.clone(),
                    expires_at: expires_at.clone(),
                });
            }
        }
        // One upsert for every chunk of every document: each document is stored whole or
        // not at all (here: the request as a whole), then chunks left from longer versions go.
        let docs: Vec<(&str, usize)> = kept.iter().map(|(d, _)| d.id.as_str()).zip(counts.iter().copied()).collect();
        let memories: Vec<gen::Memory> = if req.warm { records.iter().map(|r| gen::Memory { id: r.id.clone(), text: r.text.clone() }).collect() } else { Vec::new() };
        let outcome = if records.is_empty() {
            Ok(())
        } else {
            match store(gw, trace, &req.namespace, records).await {
                Ok(()) => drop_stale(gw, trace, &req.namespace, &docs).await,
                Err(e) => Err(e),
            }
        };
        let stored = outcome.is_ok();
        let mut results: Vec<DocumentResult> = match outcome {
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
        results.extend(unread);
        results.sort_by_key(|r| order.get(&r.document_id).copied().unwrap_or(usize::MAX));
        // States are cached for the system prompt questions are asked with.
        let system = attend::system_prompt(Task::Qa, "");
        let warmed_chunks = if stored && !memories.is_empty() { gw.generator.warm(trace, &memories, &system).await } else { 0 };
        Ok(RememberResponse { results, warmed_chunks })
    }
    .instrument(span)
    .await
}

async fn store(gw: &Gateway, trace: &Trace, namespace: &str, records: Vec<mem::Record>) -> Result<()> {
    gw.memory.upsert(trace, namespace, records).await.map(drop)
}

/// Deletes chunks `doc#n` at and beyond each document's new chunk count.
async fn drop_stale(gw: &Gateway, trace: &Trace, namespace: &str, docs: &[(&str, usize)]) -> Result<()> {
    let mut pending: Vec<(&str, usize)> = docs.to_vec();
    while !pending.is_empty() {
        let ids: Vec<String> = pending.iter().flat_map(|(d, next)| (*next..next + STALE_PAGE).map(move |n| format!("{d}#{n}"))).collect();
        let mut found = Vec::new();
        for page in ids.chunks(MAX_IDS) {
            found.extend(gw.memory.get(trace, namespace, page.to_vec()).await?);
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
            gw.memory.delete(trace, namespace, page.to_vec(), None).await?;
        }
        pending = full;
    }
    Ok(())
}

/// Deletes documents (all their chunks), whatever a filter matches, or the expired chunks.
pub async fn forget(gw: &Gateway, who: &Principal, trace: &Trace, req: ForgetRequest) -> Result<u64> {
    validate::namespace(who, &req.namespace)?;
    let target = validate::forget_target(req.document_ids, req.filter, req.expired)?;
    let span = tracing::info_span!("forget", trace_id = %trace.trace_id, namespace = %req.namespace, expired = req.expired);
    match target {
        Some(filter) => gw.memory.delete(trace, &req.namespace, Vec::new(), Some(filter)).instrument(span).await,
        None => gw.memory.delete_expired(trace, &req.namespace).instrument(span).await,
    }
}

/// The facts around an entity, hop by hop, in the namespaces named (each one the key may read).
pub async fn neighbors(gw: &Gateway, who: &Principal, trace: &Trace, req: NeighborsRequest) -> Result<NeighborsResponse> {
    validate::retrieval(&gw.config, who, &req.namespaces, None, None, true)?;
    validate::time("as_of", &req.as_of)?;
    validate::fact_part("entity", &req.entity)?;
    let hops = validate::max_hops(&gw.config, "hops", Some(req.hops.max(1)))?;
    let mut bounds = gw.config.hop_bounds();
    if req.limit > 0 {
        bounds.total = bounds.total.min(req.limit as usize);
    }
    let scope = graph::Scope { namespaces: &req.namespaces, as_of: &req.as_of };
    let (edges, truncated) = graph::neighbors(&gw.memory, trace, &scope, &req.entity, hops, bounds).await?;
    Ok(NeighborsResponse { edges, truncated, trace_id: trace.trace_id.clone() })
}

/// Encodes and retrieves only; with `group_by_document`, one citation per document (its best
/// chunk), documents ranked by that chunk's score.
pub async fn search(gw: &Gateway, who: &Principal, trace: &Trace, req: SearchRequest) -> Result<SearchResponse> {
    validate::question(&gw.config, "question", &req.question)?;
    let top_k = validate::retrieval(&gw.config, who, &req.namespaces, req.top_k, req.min_score, true)?;
    let retrieval = validate::ranking(&gw.config, req.retrieval.as_ref())?;
    validate::min_score(req.min_score, &retrieval)?;
    validate::time("as_of", &req.as_of)?;
    let span = tracing::info_span!("search", trace_id = %trace.trace_id, top_k, group_by_document = req.group_by_document);
    async move {
        let vector = if needs_vector(&retrieval) { gw.encoder.encode_one(&req.question).await? } else { Vec::new() };
        // Grouping needs more chunks than documents asked for.
        let fetch = if req.group_by_document { (top_k * 4).min(gw.config.max_top_k.max(top_k)) } else { top_k };
        let query = Query {
            vector,
            text: &req.question,
            retrieval,
            as_of: &req.as_of,
            namespaces: &req.namespaces,
            top_k: fetch,
            filter: req.filter.clone(),
            min_score: req.min_score,
        };
        let hits = retrieve(&gw.memory, trace, query).await?;
        let mut cited: Vec<Citation> = output::citations(&hits, &[]);
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
