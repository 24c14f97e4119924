//! Conversions between the domain types and Qdrant Edge's types.

use std::collections::{BTreeMap, HashMap};

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::serde_json::{self, Value};
use qdrant_edge::{
    Condition as EdgeCondition, FieldCondition, Filter as EdgeFilter, JsonPath, Match, Payload,
    PointId, PointStructPersisted, Range as EdgeRange, VectorInternal, VectorStructInternal,
};

use crate::store::{
    lexical, point_uuid, Condition, Filter, Hit, Millis, Predicate, Record, Validity,
    EXPIRES_KEY, ID_KEY, META_KEY, NAMESPACE_KEY, NUM_KEY, TEXT_KEY, VALID_FROM_KEY,
    VALID_UNTIL_KEY,
};

/// Parses a JSON path built by this module. Validation refuses metadata keys holding `"` or
/// `\\`, so a quoted key always parses.
pub fn json_path(path: &str) -> JsonPath {
    path.parse().unwrap_or_else(|()| panic!("built an unparsable JSON path `{path}`"))
}

/// JSON path of a metadata key's string value. Keys are validated to hold no `"` or `\`,
/// so quoting is always possible.
pub fn meta_path(key: &str) -> JsonPath {
    json_path(&format!("{META_KEY}.\"{key}\""))
}

/// JSON path of a metadata key's numeric value.
pub fn num_path(key: &str) -> JsonPath {
    json_path(&format!("{NUM_KEY}.\"{key}\""))
}

/// The edge point of a record.
pub fn to_point(namespace: &str, record: &Record) -> PointStructPersisted {
    let Value::Object(map) = crate::store::payload(namespace, record) else { unreachable!("json! object") };
    let vectors = HashMap::from([
        (String::new(), VectorInternal::Dense(record.vector.clone())),
        (lexical::SPARSE_VECTOR.to_string(), VectorInternal::Sparse(lexical::document(&record.text))),
    ]);
    PointStructPersisted {
        id: PointId::Uuid(point_uuid(namespace, &record.id)),
        vector: VectorStructInternal::Named(vectors).into(),
        payload: Some(Payload(map.into_iter().collect())),
    }
}

pub(crate) fn range(key: &str, range: EdgeRange<OrderedFloat<f64>>) -> EdgeCondition {
    EdgeCondition::Field(FieldCondition::new_range(json_path(key), range))
}

/// The conditions of "valid as of `as_of`, not expired by `now`".
pub fn valid_conditions(as_of: Millis, now: Millis) -> [EdgeCondition; 3] {
    let at = |t: Millis| Some(OrderedFloat(t as f64));
    [
        range(VALID_FROM_KEY, EdgeRange { lte: at(as_of), gt: None, gte: None, lt: None }),
        range(VALID_UNTIL_KEY, EdgeRange { gt: at(as_of), gte: None, lt: None, lte: None }),
        range(EXPIRES_KEY, EdgeRange { gt: at(now), gte: None, lt: None, lte: None }),
    ]
}

/// The filter of a namespace's (or every namespace's) records expired by `now`.
pub fn expired_filter(namespace: Option<&str>, now: Millis) -> EdgeFilter {
    let expired = range(EXPIRES_KEY, EdgeRange { lte: Some(OrderedFloat(now as f64)), gt: None, gte: None, lt: None });
    let must = match namespace {
        Some(ns) => vec![namespace_condition(ns), expired],
        None => vec![expired],
    };
    EdgeFilter { should: None, min_should: None, must: Some(must), must_not: None }
}

/// The namespace condition every query carries.
pub fn namespace_condition(namespace: &str) -> EdgeCondition {
    EdgeCondition::Field(FieldCondition::new_match(
        json_path(NAMESPACE_KEY),
        Match::from(namespace.to_string()),
    ))
}

/// The edge filter of a namespace and an optional metadata filter.
pub fn to_filter(namespace: &str, filter: Option<&Filter>) -> EdgeFilter {
    search_filter(std::slice::from_ref(&namespace.to_string()), filter)
}

/// The edge filter of a search over one or more namespaces and an optional metadata filter.
pub fn search_filter(namespaces: &[String], filter: Option<&Filter>) -> EdgeFilter {
    let mut must = vec![namespaces_condition(namespaces)];
    if let Some(filter) = filter {
        must.extend(filter.must.iter().map(to_condition));
    }
    EdgeFilter { should: None, min_should: None, must: Some(must), must_not: None }
}

/// The condition "in one of `namespaces`".
pub fn namespaces_condition(namespaces: &[String]) -> EdgeCondition {
    let namespaces = match namespaces {
        [one] => Match::from(one.clone()),
        many => Match::from(many.to_vec()),
    };
    EdgeCondition::Field(FieldCondition::new_match(json_path(NAMESPACE_KEY), namespaces))
}

/// The edge condition of one metadata condition.
pub fn to_condition(condition: &Condition) -> EdgeCondition {
    let field = match &condition.predicate {
        Predicate::Equals(value) => {
            FieldCondition::new_match(meta_path(&condition.key), Match::from(value.clone()))
        }
        Predicate::AnyOf(values) => {
            FieldCondition::new_match(meta_path(&condition.key), Match::from(values.clone()))
        }
        Predicate::Range { gt, gte, lt, lte } => FieldCondition::new_range(
            num_path(&condition.key),
            EdgeRange {
                gt: gt.map(OrderedFloat),
                gte: gte.map(OrderedFloat),
                lt: lt.map(OrderedFloat),
                lte: lte.map(OrderedFloat),
            },
        ),
    };
    EdgeCondition::Field(field)
}

/// Text, id and metadata out of a stored payload.
pub struct StoredFields {
    /// Namespace.
    pub namespace: String,
    /// Record id.
    pub id: String,
    /// Text.
    pub text: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Validity and expiry.
    pub validity: Validity,
}

/// Reads the record fields back from a payload.
pub fn from_payload(payload: Option<&Payload>) -> StoredFields {
    let get = |key: &str| payload.and_then(|p| p.0.get(key));
    let string = |key: &str| get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let metadata = get(META_KEY)
        .and_then(|v| serde_json::from_value::<BTreeMap<String, String>>(v.clone()).ok())
        .unwrap_or_default();
    let time = |key: &str| get(key).and_then(Value::as_i64);
    let validity = Validity::from_stored(time(VALID_FROM_KEY), time(VALID_UNTIL_KEY), time(EXPIRES_KEY));
    StoredFields { namespace: string(NAMESPACE_KEY), id: string(ID_KEY), text: string(TEXT_KEY), metadata, validity }
}

/// The dense vector of a stored point, if it was asked for.
pub fn dense_vector(vector: Option<VectorStructInternal>) -> Vec<f32> {
    match vector {
        Some(VectorStructInternal::Single(v)) => v,
        Some(VectorStructInternal::Named(mut named)) => match named.remove("") {
            Some(qdrant_edge::VectorInternal::Dense(v)) => v,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Hits out of one shard's scored points.
pub fn hits(points: Vec<qdrant_edge::ScoredPoint>) -> Vec<Hit> {
    points.into_iter().map(|p| hit(p.score, p.payload.as_ref())).collect()
}

/// A hit of a stored payload.
pub fn hit(score: f32, payload: Option<&qdrant_edge::Payload>) -> Hit {
    let fields = from_payload(payload);
    Hit {
        namespace: fields.namespace,
        id: fields.id,
        score,
        text: fields.text,
        metadata: fields.metadata,
        validity: fields.validity,
        dense: None,
        sparse: None,
    }
}
