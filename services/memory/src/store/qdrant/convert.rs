//! Conversions between the domain types and the Qdrant API's: filters (namespace, metadata,
//! validity), payloads, points read back.

use std::collections::{BTreeMap, HashMap};

use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{self as q, Condition as QCondition, Filter as QFilter, PointId};
use qdrant_client::Payload;

use crate::error::{MemoryError, Result};
use crate::store::{
    point_uuid, Filter, Hit, Millis, Predicate, Record, SearchQuery, Validity,
    EXPIRES_KEY, ID_KEY, META_KEY, NAMESPACE_KEY, NUM_KEY, TEXT_KEY, VALID_FROM_KEY,
    VALID_UNTIL_KEY,
};

pub(super) fn to_filter(namespace: &str, filter: Option<&Filter>) -> QFilter {
    QFilter::must(conditions(std::slice::from_ref(&namespace.to_string()), filter))
}

pub(super) fn at(t: Millis) -> Option<f64> {
    Some(t as f64)
}

/// The filter of a search: the namespace, the metadata filter, valid as of `as_of` and not
/// expired by `now`.
pub(super) fn search_filter(query: &SearchQuery) -> QFilter {
    valid_filter(&query.namespaces, query.filter.as_ref(), query.as_of, query.now)
}

/// The records of some namespaces that match a filter, valid as of `as_of` and not expired by
/// `now` (a search's or a find's).
pub(super) fn valid_filter(namespaces: &[String], filter: Option<&Filter>, as_of: Millis, now: Millis) -> QFilter {
    let mut must = conditions(namespaces, filter);
    must.push(QCondition::range(VALID_FROM_KEY, q::Range { lte: at(as_of), ..Default::default() }));
    must.push(QCondition::range(VALID_UNTIL_KEY, q::Range { gt: at(as_of), ..Default::default() }));
    must.push(QCondition::range(EXPIRES_KEY, q::Range { gt: at(now), ..Default::default() }));
    QFilter::must(must)
}

pub(super) fn expired_filter(namespace: Option<&str>, now: Millis) -> QFilter {
    let mut must = namespace.map(|ns| conditions(&[ns.to_string()], None)).unwrap_or_default();
    must.push(QCondition::range(EXPIRES_KEY, q::Range { lte: at(now), ..Default::default() }));
    QFilter::must(must)
}

/// The conditions of one or more namespaces (any of them) and a metadata filter (all of it).
pub(super) fn conditions(namespaces: &[String], filter: Option<&Filter>) -> Vec<QCondition> {
    let namespaces = match namespaces {
        [one] => QCondition::matches(NAMESPACE_KEY, q::r#match::MatchValue::Keyword(one.clone())),
        many => QCondition::matches(NAMESPACE_KEY, many.to_vec()),
    };
    let mut must = vec![namespaces];
    for c in filter.map(|f| f.must.as_slice()).unwrap_or_default() {
        let meta = format!("{META_KEY}.\"{}\"", c.key);
        must.push(match &c.predicate {
            Predicate::Equals(v) => QCondition::matches(meta, q::r#match::MatchValue::Keyword(v.clone())),
            Predicate::AnyOf(vs) => QCondition::matches(meta, vs.clone()),
            Predicate::Range { gt, gte, lt, lte } => QCondition::range(
                format!("{NUM_KEY}.\"{}\"", c.key),
                q::Range { gt: *gt, gte: *gte, lt: *lt, lte: *lte },
            ),
        });
    }
    must
}

pub(super) fn payload_of(namespace: &str, record: &Record) -> Result<Payload> {
    Payload::try_from(crate::store::payload(namespace, record)).map_err(MemoryError::store)
}

pub(super) fn validity_of(payload: &HashMap<String, q::Value>) -> Validity {
    let time = |key: &str| match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::IntegerValue(t)) => Some(*t),
        Some(Kind::DoubleValue(t)) => Some(*t as i64),
        _ => None,
    };
    Validity::from_stored(time(VALID_FROM_KEY), time(VALID_UNTIL_KEY), time(EXPIRES_KEY))
}

pub(super) fn record_of(payload: &HashMap<String, q::Value>, vectors: Option<q::VectorsOutput>) -> Record {
    Record {
        id: string_of(payload, ID_KEY),
        vector: vector_of(vectors),
        text: string_of(payload, TEXT_KEY),
        metadata: metadata_of(payload),
        validity: validity_of(payload),
    }
}

pub(super) fn hits(points: Vec<q::ScoredPoint>) -> Vec<Hit> {
    points
        .into_iter()
        .map(|p| Hit {
            namespace: string_of(&p.payload, NAMESPACE_KEY),
            id: string_of(&p.payload, ID_KEY),
            score: p.score,
            text: string_of(&p.payload, TEXT_KEY),
            metadata: metadata_of(&p.payload),
            validity: validity_of(&p.payload),
            dense: None,
            sparse: None,
        })
        .collect()
}

pub(super) fn string_of(payload: &HashMap<String, q::Value>, key: &str) -> String {
    match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

pub(super) fn metadata_of(payload: &HashMap<String, q::Value>) -> BTreeMap<String, String> {
    match payload.get(META_KEY).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .filter_map(|(k, v)| match &v.kind {
                Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

pub(super) fn vector_of(vectors: Option<q::VectorsOutput>) -> Vec<f32> {
    #[allow(deprecated)]
    let dense = |v: q::VectorOutput| match v.vector {
        Some(q::vector_output::Vector::Dense(d)) => d.data,
        _ => v.data,
    };
    match vectors.and_then(|v| v.vectors_options) {
        Some(q::vectors_output::VectorsOptions::Vector(v)) => dense(v),
        Some(q::vectors_output::VectorsOptions::Vectors(mut named)) => named.vectors.remove("").map(dense).unwrap_or_default(),
        None => Vec::new(),
    }
}

pub(super) fn uuid_id(namespace: &str, id: &str) -> PointId {
    PointId::from(point_uuid(namespace, id).to_string())
}
