//! Every check of a gateway request, in one place (as `memgpt-memory` and
//! `memgpt-generator` have theirs): each failure is INVALID_ARGUMENT naming the field, or
//! PERMISSION_DENIED for a namespace the key may not use, before any work is done.

use std::collections::HashMap;

use memgpt_proto::gateway::v1::{self as gw, Document, Task};
use memgpt_proto::memory::v1 as mem;

use crate::auth::Principal;
use crate::config::GatewayConfig;
use crate::error::{GatewayError, Result};

/// Longest document id, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 200;
/// Metadata keys the gateway sets on every chunk.
const RESERVED_METADATA: [&str; 2] = ["document_id", "chunk"];
/// Longest subject, relation or object of a fact, in bytes.
const MAX_FACT_PART_BYTES: usize = 512;

/// The first C0 control character (or DEL) of `text` other than newline, carriage return
/// and tab. C1 controls (U+0080 to U+009F) pass: real corpora hold them where Windows-1252
/// punctuation was decoded as Latin-1 (SciFact has U+0096 for an en dash).
fn control_character(text: &str) -> Option<char> {
    text.chars().find(|c| (*c < ' ' || *c == '\u{7f}') && !matches!(c, '\n' | '\r' | '\t'))
}

/// A text field a person writes (a question, a chat message, a document): not blank, no
/// control characters, at most `max_bytes`.
pub fn text(field: &str, text: &str, max_bytes: usize) -> Result<()> {
    if text.trim().is_empty() {
        return Err(GatewayError::invalid(field, "is empty"));
    }
    if let Some(c) = control_character(text) {
        return Err(GatewayError::invalid(field, format!("holds the control character {c:?}")));
    }
    if text.len() > max_bytes {
        return Err(GatewayError::invalid(field, format!("{} bytes exceed the limit of {max_bytes}", text.len())));
    }
    Ok(())
}

/// A question (or chat message).
pub fn question(config: &GatewayConfig, field: &str, question: &str) -> Result<()> {
    text(field, question, config.max_question_bytes)
}

/// The task.
pub fn task(value: i32) -> Result<Task> {
    Task::try_from(value).map_err(|_| GatewayError::invalid("task", format!("unknown value {value}")))
}

/// The answer style and attribution enums.
pub fn answer(answer_style: i32, attribution: i32) -> Result<()> {
    use memgpt_proto::generator::v1::{AnswerStyle, Attribution};
    AnswerStyle::try_from(answer_style).map_err(|_| GatewayError::invalid("answer_style", format!("unknown value {answer_style}")))?;
    Attribution::try_from(attribution).map_err(|_| GatewayError::invalid("attribution", format!("unknown value {attribution}")))?;
    Ok(())
}

/// The target language, which the translate task needs.
pub fn target_language(task: Task, target_language: &str) -> Result<()> {
    if task == Task::Translate && target_language.trim().is_empty() {
        return Err(GatewayError::invalid("target_language", "the translate task needs a target language"));
    }
    Ok(())
}

/// The retrieval fields (namespaces the key may use, `top_k`, `min_score`); returns `top_k`
/// with the default applied. `required`: at least one namespace must be named.
pub fn retrieval(config: &GatewayConfig, who: &Principal, namespaces: &[String], top_k: Option<u32>, min_score: Option<f32>, required: bool) -> Result<u32> {
    if namespaces.is_empty() && required {
        return Err(GatewayError::invalid("namespaces", "name at least one namespace to retrieve from"));
    }
    if namespaces.len() > config.max_namespaces {
        return Err(GatewayError::invalid("namespaces", format!("{} namespaces exceed the limit of {}", namespaces.len(), config.max_namespaces)));
    }
    for (i, ns) in namespaces.iter().enumerate() {
        if ns.is_empty() {
            return Err(GatewayError::invalid(format!("namespaces[{i}]"), "is empty"));
        }
        if namespaces[..i].contains(ns) {
            return Err(GatewayError::invalid(format!("namespaces[{i}]"), format!("`{ns}` is named twice")));
        }
        who.check(&format!("namespaces[{i}]"), ns)?;
    }
    let top_k = top_k.unwrap_or(config.default_top_k);
    if top_k == 0 || top_k > config.max_top_k {
        return Err(GatewayError::invalid("top_k", format!("{top_k} is outside 1..={}", config.max_top_k)));
    }
    if min_score.is_some_and(|s| !s.is_finite()) {
        return Err(GatewayError::invalid("min_score", "must be a finite number"));
    }
    Ok(top_k)
}

/// `min_score` against the ranking's scale: a cosine lies in [-1, 1] (BM25 and fused scores
/// are any non-negative number).
pub fn min_score(min_score: Option<f32>, ranking: &mem::Retrieval) -> Result<()> {
    let dense = ranking.mode == mem::RetrievalMode::Dense as i32;
    if dense && min_score.is_some_and(|s| !(-1.0..=1.0).contains(&s)) {
        return Err(GatewayError::invalid("min_score", "must be a number in [-1, 1] (a cosine) in the dense mode"));
    }
    Ok(())
}

/// How a request ranks: its `retrieval` with the gateway's defaults filled in (a mode left
/// unspecified takes the default mode; an unset k or weight the default one).
pub fn ranking(config: &GatewayConfig, retrieval: Option<&mem::Retrieval>) -> Result<mem::Retrieval> {
    let default = config.default_retrieval();
    let Some(r) = retrieval else { return Ok(default) };
    let mode = mem::RetrievalMode::try_from(r.mode)
        .map_err(|_| GatewayError::invalid("retrieval.mode", format!("unknown value {}; use dense, sparse or hybrid", r.mode)))?;
    let fusion = mem::Fusion::try_from(r.fusion)
        .map_err(|_| GatewayError::invalid("retrieval.fusion", format!("unknown value {}; use rrf or convex", r.fusion)))?;
    if r.rrf_k == Some(0) {
        return Err(GatewayError::invalid("retrieval.rrf_k", "must be at least 1"));
    }
    if let Some(w) = r.dense_weight.filter(|w| !(0.0..=1.0).contains(w)) {
        return Err(GatewayError::invalid("retrieval.dense_weight", format!("is {w}; it must lie in [0, 1]")));
    }
    let (mode, fusion) = match (mode, fusion) {
        (mem::RetrievalMode::Unspecified, mem::Fusion::Unspecified) => (default.mode, default.fusion),
        (mem::RetrievalMode::Unspecified, f) => (default.mode, f as i32),
        (m, mem::Fusion::Unspecified) => (m as i32, default.fusion),
        (m, f) => (m as i32, f as i32),
    };
    Ok(mem::Retrieval { mode, fusion, rrf_k: r.rrf_k.or(default.rrf_k), dense_weight: r.dense_weight.or(default.dense_weight) })
}

/// A question's `max_hops`: unset is 1 (retrieval alone); 1 to the gateway's limit.
pub fn max_hops(config: &GatewayConfig, field: &str, max_hops: Option<u32>) -> Result<u32> {
    match max_hops.unwrap_or(1) {
        n if (1..=config.max_hops).contains(&n) => Ok(n),
        n => Err(GatewayError::invalid(field, format!("is {n}; it must be 1 to {} (the gateway's --max-hops)", config.max_hops))),
    }
}

/// A subject, relation, object or entity: 1 to 512 bytes, not blank, no control characters.
pub fn fact_part(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.len() > MAX_FACT_PART_BYTES {
        return Err(GatewayError::invalid(field, format!("must be 1 to {MAX_FACT_PART_BYTES} bytes, not blank (is {})", value.len())));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(GatewayError::invalid(field, format!("holds the control character {c:?}")));
    }
    Ok(())
}

/// The facts of a Remember, as the documents they are stored as (a fact given twice once);
/// metadata and validity as a document's, and no fact's id one of `documents`'.
pub fn facts(facts: &[gw::Fact], documents: &[Document]) -> Result<Vec<Document>> {
    let mut stored: Vec<Document> = Vec::with_capacity(facts.len());
    for (i, f) in facts.iter().enumerate() {
        for (name, value) in [("subject", &f.subject), ("relation", &f.relation), ("object", &f.object)] {
            fact_part(&format!("facts[{i}].{name}"), value)?;
        }
        metadata(&format!("facts[{i}].metadata"), &f.metadata)?;
        let d = crate::stages::graph::fact_document(f);
        validity(&format!("facts[{i}]"), &d)?;
        if documents.iter().any(|doc| doc.id == d.id) {
            return Err(GatewayError::invalid(format!("facts[{i}]"), format!("its id `{}` is also a document's", d.id)));
        }
        if !stored.iter().any(|s| s.id == d.id) {
            stored.push(d);
        }
    }
    Ok(stored)
}

/// A document's or a fact's metadata: keys clean and not the gateway's own.
fn metadata(field: &str, metadata: &HashMap<String, String>) -> Result<()> {
    if let Some(key) = metadata.keys().find(|k| k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control() || c == '"' || c == '\\')) {
        return Err(GatewayError::invalid(field, format!("key {key:?} must be 1 to 256 bytes without control characters, `\"` or `\\`")));
    }
    if let Some(key) = metadata.keys().find(|k| RESERVED_METADATA.contains(&k.as_str()) || k.starts_with(crate::stages::graph::PREFIX)) {
        return Err(GatewayError::invalid(field, format!("`{key}` is set by the gateway")));
    }
    Ok(())
}

/// An RFC 3339 time (empty allowed: "unbounded" or "now"), checked here so a bad one fails
/// before any work; returns it in milliseconds.
pub fn time(field: &str, value: &str) -> Result<Option<i64>> {
    if value.is_empty() {
        return Ok(None);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| GatewayError::invalid(field, format!("`{value}` is not an RFC 3339 time ({e}); write e.g. 2024-05-01T12:00:00Z")))
}

/// A document's validity: both times well-formed, `valid_until` after `valid_from`.
fn validity(at: &str, d: &Document) -> Result<()> {
    let from = time(&format!("{at}.valid_from"), &d.valid_from)?;
    let until = time(&format!("{at}.valid_until"), &d.valid_until)?;
    if let (Some(from), Some(until)) = (from, until) {
        if until <= from {
            return Err(GatewayError::invalid(format!("{at}.valid_until"), format!("`{}` is not after valid_from `{}`", d.valid_until, d.valid_from)));
        }
    }
    Ok(())
}

/// The one namespace a write names, which the key must be allowed.
pub fn namespace(who: &Principal, ns: &str) -> Result<()> {
    if ns.is_empty() {
        return Err(GatewayError::invalid("namespace", "is empty"));
    }
    who.check("namespace", ns)
}

/// The documents of a Remember: 1 to `max_documents`, ids unique and well-formed, texts
/// within the limit, metadata keys clean and not the gateway's own.
pub fn documents(config: &GatewayConfig, documents: &[Document], facts: usize) -> Result<()> {
    let n = documents.len() + facts;
    if n == 0 || n > config.max_documents {
        return Err(GatewayError::invalid("documents", format!("give 1 to {} documents and facts (got {n})", config.max_documents)));
    }
    let mut seen = HashMap::new();
    for (i, d) in documents.iter().enumerate() {
        if d.id.is_empty() || d.id.len() > MAX_DOC_ID_BYTES || d.id.chars().any(|c| c.is_control() || c == '#') {
            return Err(GatewayError::invalid(format!("documents[{i}].id"), format!("must be 1 to {MAX_DOC_ID_BYTES} bytes without control characters or `#`")));
        }
        if let Some(j) = seen.insert(d.id.as_str(), i) {
            return Err(GatewayError::invalid(format!("documents[{i}].id"), format!("`{}` is also documents[{j}]", d.id)));
        }
        content(config, i, d)?;
        metadata(&format!("documents[{i}].metadata"), &d.metadata)?;
        validity(&format!("documents[{i}]"), d)?;
    }
    Ok(())
}

/// A document's `text` or `content` (one of them) and its `media_type`.
fn content(config: &GatewayConfig, i: usize, d: &Document) -> Result<()> {
    if !d.media_type.is_empty() && crate::ingest::media_type(&d.media_type).is_none() {
        let known: Vec<&str> = crate::ingest::MEDIA_TYPES.iter().map(|(m, _)| *m).collect();
        return Err(GatewayError::invalid(format!("documents[{i}].media_type"), format!("`{}` is not one of {}", d.media_type, known.join(", "))));
    }
    if d.content.is_empty() {
        return text(&format!("documents[{i}].text"), &d.text, config.max_document_bytes);
    }
    if !d.text.is_empty() {
        return Err(GatewayError::invalid(format!("documents[{i}].content"), "give text or content, not both"));
    }
    if d.content.len() > config.max_file_bytes {
        return Err(GatewayError::invalid(format!("documents[{i}].content"), format!("{} bytes exceed the limit of {}", d.content.len(), config.max_file_bytes)));
    }
    Ok(())
}

/// What a Forget deletes: the chunks of `document_ids`, what `filter` matches, or (`None`)
/// the expired chunks; exactly one of the three.
pub fn forget_target(document_ids: Vec<String>, filter: Option<mem::Filter>, expired: bool) -> Result<Option<mem::Filter>> {
    if expired {
        if !document_ids.is_empty() || filter.is_some() {
            return Err(GatewayError::invalid("expired", "give document_ids, a filter or expired, one of them"));
        }
        return Ok(None);
    }
    let target = match (document_ids.is_empty(), filter) {
        (false, None) => Ok(mem::Filter {
            must: vec![mem::Condition { key: "document_id".into(), predicate: Some(mem::condition::Predicate::AnyOf(mem::AnyOf { values: document_ids })) }],
        }),
        (true, Some(f)) => Ok(f),
        (false, Some(_)) => Err(GatewayError::invalid("filter", "give document_ids or a filter, not both")),
        (true, None) => Err(GatewayError::invalid("document_ids", "give document_ids, a filter or expired")),
    };
    target.map(Some)
}

/// A chat session id: 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.'.
pub fn session_id(session_id: &str) -> Result<()> {
    let ok = !session_id.is_empty() && session_id.len() <= 128 && session_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::invalid("session_id", "must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.'"))
    }
}
