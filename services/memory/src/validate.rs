//! Validation at the edge: each request is checked whole and turned into domain types before
//! anything reaches a store. Errors name the offending field.

use std::collections::{BTreeMap, HashSet};

use memgpt_proto::memory::v1 as pb;

use crate::error::{MemoryError, Result};
use crate::store::{fusion, time, Condition, Filter, FindQuery, Fusion, Millis, Predicate, Record, Retrieval, SearchQuery};

/// Longest namespace or id, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest top_k, page size and id list.
pub const MAX_TOP_K: u32 = 1000;
/// Most namespaces `more_namespaces` may add to one search.
pub const MAX_SEARCH_NAMESPACES: usize = 64;

/// Limits that requests are held to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The vector dimension.
    pub dimension: usize,
    /// Longest text, in bytes.
    pub max_text_bytes: usize,
    /// Most metadata keys per record.
    pub max_metadata_keys: usize,
    /// Most metadata bytes (keys and values) per record.
    pub max_metadata_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { dimension: 384, max_text_bytes: 64 * 1024, max_metadata_keys: 64, max_metadata_bytes: 16 * 1024 }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> MemoryError {
    MemoryError::invalid(field, reason)
}

/// A namespace or id: 1 to 256 bytes, no control characters.
pub fn name(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(field, format!("is {} bytes; the limit is {MAX_NAME_BYTES}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A vector of the service's dimension, finite and not all zero.
pub fn vector(field: &str, values: &[f32], limits: &Limits) -> Result<()> {
    if values.len() != limits.dimension {
        return Err(invalid(
            field,
            format!("has dimension {}; this service stores dimension {}", values.len(), limits.dimension),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(field, format!("component {i} is {}", values[i])));
    }
    if values.iter().all(|v| *v == 0.0) {
        return Err(invalid(field, "is all zeros; cosine similarity is undefined for it"));
    }
    Ok(())
}

fn metadata_key(field: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_NAME_BYTES {
        return Err(invalid(field, format!("key `{key}` must be 1 to {MAX_NAME_BYTES} bytes")));
    }
    if key.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err(invalid(field, format!("key {key:?} holds a control character, `\"` or `\\`")));
    }
    Ok(())
}

fn metadata(field: &str, map: &std::collections::HashMap<String, String>, limits: &Limits) -> Result<()> {
    if map.len() > limits.max_metadata_keys {
        return Err(invalid(field, format!("has {} keys; the limit is {}", map.len(), limits.max_metadata_keys)));
    }
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > limits.max_metadata_bytes {
        return Err(invalid(field, format!("is {bytes} bytes; the limit is {}", limits.max_metadata_bytes)));
    }
    for key in map.keys() {
        metadata_key(field, key)?;
    }
    Ok(())
}

/// An Upsert request.
pub fn upsert(req: pb::UpsertRequest, limits: &Limits) -> Result<(String, Vec<Record>)> {
    name("namespace", &req.namespace)?;
    if req.records.is_empty() {
        return Err(invalid("records", "must hold at least one record"));
    }
    let mut seen = HashSet::with_capacity(req.records.len());
    for (i, r) in req.records.iter().enumerate() {
        name(&format!("records[{i}].id"), &r.id)?;
        if !seen.insert(r.id.as_str()) {
            return Err(invalid(format!("records[{i}].id"), format!("`{}` appears twice in the batch", r.id)));
        }
        vector(&format!("records[{i}].vector"), &r.vector, limits)?;
        if r.text.len() > limits.max_text_bytes {
            return Err(invalid(
                format!("records[{i}].text"),
                format!("is {} bytes; the limit is {}", r.text.len(), limits.max_text_bytes),
            ));
        }
        metadata(&format!("records[{i}].metadata"), &r.metadata, limits)?;
    }
    let mut records = Vec::with_capacity(req.records.len());
    for (i, r) in req.records.into_iter().enumerate() {
        let validity = time::validity(&format!("records[{i}]"), &r.valid_from, &r.valid_until, &r.expires_at)?;
        let metadata = r.metadata.into_iter().collect::<BTreeMap<_, _>>();
        records.push(Record { id: r.id, vector: r.vector, text: r.text, metadata, validity });
    }
    Ok((req.namespace, records))
}

/// A metadata filter; `None` when absent or empty.
pub fn filter(field: &str, filter: Option<pb::Filter>) -> Result<Option<Filter>> {
    let Some(filter) = filter else { return Ok(None) };
    if filter.must.len() > 64 {
        return Err(invalid(format!("{field}.must"), "holds more than 64 conditions"));
    }
    let mut must = Vec::with_capacity(filter.must.len());
    for (i, c) in filter.must.into_iter().enumerate() {
        let at = format!("{field}.must[{i}]");
        metadata_key(&format!("{at}.key"), &c.key)?;
        use pb::condition::Predicate as P;
        let predicate = match c.predicate {
            None => return Err(invalid(&at, "sets none of equals, any_of, range")),
            Some(P::Equals(v)) => Predicate::Equals(v),
            Some(P::AnyOf(any)) => {
                if any.values.is_empty() {
                    return Err(invalid(format!("{at}.any_of"), "must list at least one value"));
                }
                if any.values.len() > 1000 {
                    return Err(invalid(format!("{at}.any_of"), "lists more than 1000 values"));
                }
                Predicate::AnyOf(any.values)
            }
            Some(P::Range(r)) => {
                let bounds = [r.gt, r.gte, r.lt, r.lte];
                if bounds.iter().all(Option::is_none) {
                    return Err(invalid(format!("{at}.range"), "sets no bound"));
                }
                if bounds.iter().flatten().any(|b| !b.is_finite()) {
                    return Err(invalid(format!("{at}.range"), "bounds must be finite numbers"));
                }
                Predicate::Range { gt: r.gt, gte: r.gte, lt: r.lt, lte: r.lte }
            }
        };
        must.push(Condition { key: c.key, predicate });
    }
    Ok((!must.is_empty()).then_some(Filter { must }))
}

/// How a search ranks (unset: dense). `field` is the message's path.
pub fn retrieval(field: &str, retrieval: Option<&pb::Retrieval>) -> Result<Retrieval> {
    let Some(r) = retrieval else { return Ok(Retrieval::Dense) };
    let mode = pb::RetrievalMode::try_from(r.mode)
        .map_err(|_| invalid(format!("{field}.mode"), format!("unknown value {}; use dense, sparse or hybrid", r.mode)))?;
    let fusion = pb::Fusion::try_from(r.fusion)
        .map_err(|_| invalid(format!("{field}.fusion"), format!("unknown value {}; use rrf or convex", r.fusion)))?;
    if r.rrf_k == Some(0) {
        return Err(invalid(format!("{field}.rrf_k"), "must be at least 1"));
    }
    if let Some(w) = r.dense_weight {
        if !(0.0..=1.0).contains(&w) {
            return Err(invalid(format!("{field}.dense_weight"), format!("is {w}; it must lie in [0, 1]")));
        }
    }
    Ok(match mode {
        pb::RetrievalMode::Unspecified | pb::RetrievalMode::Dense => Retrieval::Dense,
        pb::RetrievalMode::Sparse => Retrieval::Sparse,
        pb::RetrievalMode::Hybrid => Retrieval::Hybrid(match fusion {
            pb::Fusion::Rrf => Fusion::Rrf { k: r.rrf_k.unwrap_or(fusion::DEFAULT_RRF_K) },
            pb::Fusion::Unspecified | pb::Fusion::Convex => {
                Fusion::Convex { dense_weight: r.dense_weight.unwrap_or(fusion::DEFAULT_DENSE_WEIGHT) }
            }
        }),
    })
}

/// The time a search is made as of: `as_of`, or `now` when empty.
pub fn as_of(field: &str, value: &str, now: Millis) -> Result<Millis> {
    Ok(time::parse(field, value)?.unwrap_or(now))
}

/// The namespaces of a Search or Find: `namespace`, then `more_namespaces`.
fn namespaces(namespace: String, more: Vec<String>) -> Result<Vec<String>> {
    name("namespace", &namespace)?;
    if more.len() > MAX_SEARCH_NAMESPACES {
        let n = more.len();
        return Err(invalid("more_namespaces", format!("lists {n}; at most {MAX_SEARCH_NAMESPACES} namespaces join one search")));
    }
    let mut namespaces = Vec::with_capacity(1 + more.len());
    namespaces.push(namespace);
    for ns in more {
        name("more_namespaces", &ns)?;
        if namespaces.contains(&ns) {
            return Err(invalid("more_namespaces", format!("names {ns:?} twice")));
        }
        namespaces.push(ns);
    }
    Ok(namespaces)
}

/// A Find request.
pub fn find(req: pb::FindRequest) -> Result<FindQuery> {
    let namespaces = namespaces(req.namespace, req.more_namespaces)?;
    let filter = match filter("filter", req.filter)? {
        Some(f) if !f.must.is_empty() => f,
        _ => return Err(invalid("filter", "has no condition; Find looks records up by their payload")),
    };
    if req.limit == 0 || req.limit > MAX_TOP_K {
        return Err(invalid("limit", format!("is {}; it must be 1 to {MAX_TOP_K}", req.limit)));
    }
    let now = time::now();
    Ok(FindQuery { namespaces, filter, limit: req.limit as usize, as_of: as_of("as_of", &req.as_of, now)?, now })
}

/// A Search request.
pub fn search(req: pb::SearchRequest, limits: &Limits) -> Result<SearchQuery> {
    let namespaces = namespaces(req.namespace, req.more_namespaces)?;
    let retrieval = retrieval("retrieval", req.retrieval.as_ref())?;
    // The sparse mode needs no vector; one that is sent must still be well-formed.
    if retrieval.dense() || !req.vector.is_empty() {
        vector("vector", &req.vector, limits)?;
    }
    if retrieval.sparse() && req.query_text.trim().is_empty() {
        return Err(invalid("query_text", "is empty; the sparse and hybrid modes search the query's words"));
    }
    if req.query_text.len() > limits.max_text_bytes {
        return Err(invalid("query_text", format!("is {} bytes; the limit is {}", req.query_text.len(), limits.max_text_bytes)));
    }
    let now = time::now();
    if req.top_k == 0 || req.top_k > MAX_TOP_K {
        return Err(invalid("top_k", format!("is {}; it must be 1 to {MAX_TOP_K}", req.top_k)));
    }
    if let Some(score) = req.min_score {
        if !score.is_finite() {
            return Err(invalid("min_score", "must be a finite number"));
        }
    }
    Ok(SearchQuery {
        namespaces,
        vector: req.vector,
        top_k: req.top_k as usize,
        filter: filter("filter", req.filter)?,
        min_score: req.min_score,
        text: req.query_text,
        retrieval,
        as_of: as_of("as_of", &req.as_of, now)?,
        now,
    })
}

/// A list of ids (Get, Delete).
pub fn ids(field: &str, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Err(invalid(field, "must list at least one id"));
    }
    if ids.len() > MAX_TOP_K as usize {
        return Err(invalid(field, format!("lists {} ids; the limit is {MAX_TOP_K}", ids.len())));
    }
    for (i, id) in ids.iter().enumerate() {
        name(&format!("{field}[{i}]"), id)?;
    }
    Ok(())
}

/// What a Delete request deletes.
pub enum DeleteTarget {
    /// By ids.
    Ids(Vec<String>),
    /// By filter.
    Filter(Filter),
    /// The expired records (of the namespace, or of all when it is `None`).
    Expired(Option<String>),
}

/// A Delete request (with `expired` and no namespace: the expired records of every namespace).
pub fn delete(req: pb::DeleteRequest) -> Result<(String, DeleteTarget)> {
    if req.expired {
        if !req.ids.is_empty() || req.filter.is_some() {
            return Err(invalid("expired", "set one of ids, filter and expired"));
        }
        if req.namespace.is_empty() {
            return Ok((String::new(), DeleteTarget::Expired(None)));
        }
        name("namespace", &req.namespace)?;
        return Ok((req.namespace.clone(), DeleteTarget::Expired(Some(req.namespace))));
    }
    name("namespace", &req.namespace)?;
    let filter = filter("filter", req.filter)?;
    match (req.ids.is_empty(), filter) {
        (false, Some(_)) => Err(invalid("ids", "set either ids or filter, not both")),
        (true, None) => Err(invalid("ids", "set ids or a non-empty filter")),
        (false, None) => {
            ids("ids", &req.ids)?;
            Ok((req.namespace, DeleteTarget::Ids(req.ids)))
        }
        (true, Some(f)) => Ok((req.namespace, DeleteTarget::Filter(f))),
    }
}

/// Page size of a List request (0 means 100).
pub fn page_size(size: u32) -> Result<usize> {
    match size {
        0 => Ok(100),
        1..=MAX_TOP_K => Ok(size as usize),
        _ => Err(invalid("page_size", format!("is {size}; the limit is {MAX_TOP_K}"))),
    }
}
