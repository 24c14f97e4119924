//! Graph recall: facts as memories, and the hops that follow them.
//!
//! A fact (`subject relation object`) is stored as a one-chunk memory whose text reads as a
//! sentence, with its parts and the normalised keys of its two entities in metadata
//! (`fact.subject_key`, `fact.object_key`; keyword-indexed by the memory service). After
//! retrieval, [`follow`] looks up, hop by hop, the facts whose subject is an object of the
//! previous hop's facts: a payload lookup (memory `Find`) by exact key, not a vector search,
//! over the same namespaces the question may read. [`neighbors`] walks both directions from
//! one entity. Every walk is bounded (see [`Bounds`]) and never visits an entity twice.

use std::collections::{BTreeMap, HashSet};

use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;
use memgpt_proto::memory::v1 as mem;
use tracing::Instrument;

use super::retrieve::Retrieved;
use crate::clients::MemoryClient;
use crate::error::Result;
use crate::trace::Trace;

/// Metadata key of a fact's subject, as given.
pub const SUBJECT: &str = "fact.subject";
/// Metadata key of a fact's relation.
pub const RELATION: &str = "fact.relation";
/// Metadata key of a fact's object.
pub const OBJECT: &str = "fact.object";
/// Metadata key of the subject's entity key.
pub const SUBJECT_KEY: &str = "fact.subject_key";
/// Metadata key of the object's entity key.
pub const OBJECT_KEY: &str = "fact.object_key";
/// The prefix of the metadata keys the gateway sets on facts.
pub const PREFIX: &str = "fact.";

/// The key an entity is matched by: trimmed, lowercased, inner whitespace as one space.
pub fn entity_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A fact's id: stable over its normalised parts, so the same fact remembered twice is one
/// memory.
pub fn fact_id(fact: &gw::Fact) -> String {
    let name = [entity_key(&fact.subject), entity_key(&fact.relation), entity_key(&fact.object)].join("\u{1f}");
    format!("fact-{}", uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).simple())
}

/// The document a fact is stored as (its text one sentence, its parts in metadata).
pub fn fact_document(fact: &gw::Fact) -> gw::Document {
    let mut metadata = fact.metadata.clone();
    for (key, value) in [
        (SUBJECT, fact.subject.trim().to_string()),
        (RELATION, fact.relation.trim().to_string()),
        (OBJECT, fact.object.trim().to_string()),
        (SUBJECT_KEY, entity_key(&fact.subject)),
        (OBJECT_KEY, entity_key(&fact.object)),
    ] {
        metadata.insert(key.to_string(), value);
    }
    gw::Document {
        id: fact_id(fact),
        text: format!("{} {} {}.", fact.subject.trim(), fact.relation.trim(), fact.object.trim()),
        metadata,
        valid_from: fact.valid_from.clone(),
        valid_until: fact.valid_until.clone(),
        ..Default::default()
    }
}

/// How far a walk may go.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most facts one hop adds.
    pub per_hop: usize,
    /// Most facts a walk adds in all.
    pub total: usize,
}

/// Where a walk looks: the namespaces (already allowed to the caller) and the time.
pub struct Scope<'a> {
    /// Namespaces, at least one.
    pub namespaces: &'a [String],
    /// Only facts valid at this time (RFC 3339; empty: now).
    pub as_of: &'a str,
}

fn any_of(key: &str, values: Vec<String>) -> mem::Filter {
    mem::Filter { must: vec![mem::Condition { key: key.into(), predicate: Some(mem::condition::Predicate::AnyOf(mem::AnyOf { values })) }] }
}

/// The facts of `scope` whose `key` is one of `entities`, at most `limit` (and whether more matched).
async fn find(memory: &MemoryClient, trace: &Trace, scope: &Scope<'_>, key: &str, entities: Vec<String>, limit: usize) -> Result<(Vec<mem::Hit>, bool)> {
    let (first, more) = scope.namespaces.split_first().ok_or_else(|| crate::GatewayError::invalid("namespaces", "names none"))?;
    let req = mem::FindRequest {
        namespace: first.clone(),
        more_namespaces: more.to_vec(),
        filter: Some(any_of(key, entities)),
        limit: limit.max(1) as u32,
        as_of: scope.as_of.to_string(),
    };
    memory.find(trace, req).await
}

fn meta<'a>(hit: &'a mem::Hit, key: &str) -> Option<&'a str> {
    hit.metadata.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Follows the facts among `hits` for up to `max_hops - 1` more hops and appends what it
/// reaches, hop by hop, each fact after the one that led to it (a chain comes in path order).
pub async fn follow(memory: &MemoryClient, trace: &Trace, scope: &Scope<'_>, mut hits: Vec<Retrieved>, max_hops: u32, bounds: Bounds) -> Result<Vec<Retrieved>> {
    let span = tracing::info_span!("hops", max_hops, reached = tracing::field::Empty);
    async move {
        let mut seen: HashSet<(String, String)> = hits.iter().map(|r| (r.namespace.clone(), r.hit.id.clone())).collect();
        for r in hits.iter_mut() {
            r.walked = meta(&r.hit, OBJECT_KEY).is_some();
        }
        let mut expanded: HashSet<String> = HashSet::new();
        let mut level: Vec<usize> = (0..hits.len()).collect();
        let mut added = 0;
        for hop in 2..=max_hops {
            // The entities the previous hop points to, first come first.
            let mut frontier: Vec<(String, usize)> = Vec::new();
            for &i in &level {
                if let Some(object) = meta(&hits[i].hit, OBJECT_KEY) {
                    if expanded.insert(object.to_string()) {
                        frontier.push((object.to_string(), i));
                    }
                }
            }
            let room = bounds.per_hop.min(bounds.total - added);
            if frontier.is_empty() || room == 0 {
                break;
            }
            let entities = frontier.iter().map(|(e, _)| e.clone()).collect();
            // Facts already held may come back too: ask for room beyond them.
            let (found, _) = find(memory, trace, scope, SUBJECT_KEY, entities, (room + seen.len()).min(1000)).await?;
            let mut next: Vec<(usize, Retrieved)> = found
                .into_iter()
                .filter(|h| seen.insert((h.namespace.clone(), h.id.clone())))
                .take(room)
                .filter_map(|hit| {
                    let subject = meta(&hit, SUBJECT_KEY)?.to_string();
                    let &(_, from) = frontier.iter().find(|(e, _)| *e == subject)?;
                    let via = hits[from].hit.id.clone();
                    Some((from, Retrieved { namespace: hit.namespace.clone(), hit, hop, via, via_entity: subject, from: Some(from), walked: true }))
                })
                .collect();
            next.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.hit.id.cmp(&b.1.hit.id)));
            level = (hits.len()..hits.len() + next.len()).collect();
            added += next.len();
            hits.extend(next.into_iter().map(|(_, r)| r));
        }
        tracing::Span::current().record("reached", added);
        Ok(hits)
    }
    .instrument(span)
    .await
}

/// What the generator reads of a question's hits: each hit that no hop continues is one
/// memory as stored; a fact that hops continue is read as the paths through it, one memory per
/// path from the retrieved fact to a fact nothing continues ("a r b, which s c: a path of 2
/// facts from a to c."),
/// so a chain reads in path order as one sentence. Returns the memories and, for each hit, the
/// memory it is read in (the first, when paths share it).
pub fn memories(hits: &[Retrieved]) -> (Vec<gen::Memory>, Vec<usize>) {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); hits.len()];
    for (i, r) in hits.iter().enumerate() {
        if let Some(from) = r.from.filter(|&f| f < i) {
            children[from].push(i);
        }
    }
    let mut memories = Vec::new();
    let mut read_in = vec![usize::MAX; hits.len()];
    for root in (0..hits.len()).filter(|&i| hits[i].from.is_none()) {
        if children[root].is_empty() && !hits[root].walked {
            read_in[root] = memories.len();
            memories.push(gen::Memory { id: hits[root].hit.id.clone(), text: hits[root].hit.text.clone() });
            continue;
        }
        // Depth first: every root-to-leaf path, in hit order.
        let mut stack = vec![vec![root]];
        while let Some(path) = stack.pop() {
            let last = *path.last().unwrap_or(&root);
            if children[last].is_empty() {
                for &i in &path {
                    if read_in[i] == usize::MAX {
                        read_in[i] = memories.len();
                    }
                }
                let ids: Vec<&str> = path.iter().map(|&i| hits[i].hit.id.as_str()).collect();
                memories.push(gen::Memory { id: format!("path:{}", ids.join(">")), text: path_text(hits, &path) });
                continue;
            }
            for &c in children[last].iter().rev() {
                let mut next = path.clone();
                next.push(c);
                stack.push(next);
            }
        }
    }
    (memories, read_in)
}

/// A path of facts as one sentence: the first fact, then each next one as "which ...", then
/// the path's ends ("a r b, which s c: a path of 2 facts from a to c.").
fn path_text(hits: &[Retrieved], path: &[usize]) -> String {
    let part = |i: usize, k: &str| meta(&hits[i].hit, k).unwrap_or_default().to_string();
    let mut text = format!("{} {} {}", part(path[0], SUBJECT), part(path[0], RELATION), part(path[0], OBJECT));
    for &i in &path[1..] {
        text.push_str(&format!(", which {} {}", part(i, RELATION), part(i, OBJECT)));
    }
    // The walk knows the path's two ends: said plainly, a small model answers from them.
    let (head, end) = (part(path[0], SUBJECT), part(path[path.len() - 1], OBJECT));
    let facts = if path.len() == 1 { "fact" } else { "facts" };
    text.push_str(&format!(": a path of {} {facts} from {head} to {end}.", path.len()));
    text
}

/// The facts around `entity`, out to `hops` in both directions, by hop; whether a bound cut
/// the walk short.
pub async fn neighbors(memory: &MemoryClient, trace: &Trace, scope: &Scope<'_>, entity: &str, hops: u32, bounds: Bounds) -> Result<(Vec<gw::Edge>, bool)> {
    let span = tracing::info_span!("neighbors", hops, edges = tracing::field::Empty);
    async move {
        let mut visited: HashSet<String> = HashSet::from([entity_key(entity)]);
        let mut frontier = vec![entity_key(entity)];
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let (mut edges, mut truncated) = (Vec::new(), false);
        for hop in 1..=hops {
            let room = bounds.per_hop.min(bounds.total - edges.len());
            if frontier.is_empty() || room == 0 {
                truncated |= !frontier.is_empty();
                break;
            }
            let mut level: BTreeMap<(String, String), mem::Hit> = BTreeMap::new();
            for key in [SUBJECT_KEY, OBJECT_KEY] {
                let (found, cut) = find(memory, trace, scope, key, frontier.clone(), (room + seen.len()).min(1000)).await?;
                truncated |= cut;
                for hit in found {
                    level.insert((hit.namespace.clone(), hit.id.clone()), hit);
                }
            }
            let new: Vec<_> = level.into_iter().filter(|(id, _)| !seen.contains(id)).collect();
            truncated |= new.len() > room;
            let mut next = Vec::new();
            for (id, hit) in new.into_iter().take(room) {
                for key in [SUBJECT_KEY, OBJECT_KEY] {
                    if let Some(e) = meta(&hit, key).filter(|e| visited.insert(e.to_string())) {
                        next.push(e.to_string());
                    }
                }
                let part = |k: &str| meta(&hit, k).unwrap_or_default().to_string();
                edges.push(gw::Edge { subject: part(SUBJECT), relation: part(RELATION), object: part(OBJECT), hop, memory_id: hit.id.clone(), namespace: hit.namespace.clone() });
                seen.insert(id);
            }
            frontier = next;
        }
        tracing::Span::current().record("edges", edges.len());
        Ok((edges, truncated))
    }
    .instrument(span)
    .await
}
