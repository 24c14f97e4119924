//! Conversions between the domain types and Qdrant Edge's types.

use std::collections::BTreeMap;

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::serde_json::{self, json, Value};
use qdrant_edge::{
    Condition as EdgeCondition, FieldCondition, Filter as EdgeFilter, JsonPath, Match, Payload,
    PointId, PointStructPersisted, Range as EdgeRange, VectorStructInternal, Vectors,
};

use crate::store::{
    numeric_metadata, point_uuid, Condition, Filter, Predicate, Record, ID_KEY, META_KEY,
    NAMESPACE_KEY, NUM_KEY, TEXT_KEY,
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
    let payload = json!({
        NAMESPACE_KEY: namespace,
        ID_KEY: record.id,
        TEXT_KEY: record.text,
        META_KEY: record.metadata,
        NUM_KEY: numeric_metadata(&record.metadata),
    });
    let Value::Object(map) = payload else { unreachable!("json! object") };
    let vectors: Vectors = record.vector.clone().into();
    PointStructPersisted {
        id: PointId::Uuid(point_uuid(namespace, &record.id)),
        vector: vectors.0.into(),
        payload: Some(Payload(map.into_iter().collect())),
    }
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
    let mut must = vec![namespace_condition(namespace)];
    if let Some(filter) = filter {
        must.extend(filter.must.iter().map(to_condition));
    }
    EdgeFilter { should: None, min_should: None, must: Some(must), must_not: None }
}

fn to_condition(condition: &Condition) -> EdgeCondition {
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
    /// Record id.
    pub id: String,
    /// Text.
    pub text: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Reads the record fields back from a payload.
pub fn from_payload(payload: Option<&Payload>) -> StoredFields {
    let get = |key: &str| payload.and_then(|p| p.0.get(key));
    let string = |key: &str| get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let metadata = get(META_KEY)
        .and_then(|v| serde_json::from_value::<BTreeMap<String, String>>(v.clone()).ok())
        .unwrap_or_default();
    StoredFields { id: string(ID_KEY), text: string(TEXT_KEY), metadata }
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
