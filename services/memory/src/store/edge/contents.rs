//! What each shard is known to hold, so that a search leaves out the conditions every one of
//! its points meets. Qdrant checks each condition of a filter on every point the HNSW walk
//! visits; on a shard of one namespace and unbounded records (the common case) the namespace
//! and the three validity conditions are a third of the search's time (docs/benchmarks.md).
//!
//! Knowledge only grows between opens: a write that adds a namespace, or the first record
//! with a bound, updates it under the write lock while it applies the points, and a search
//! holds the read lock while it decides its filter and searches, so a search never runs
//! without a condition a point it can see would fail. Deletes leave it as it is (a superset
//! stays true); reopening the store surveys the shards afresh.

use std::collections::HashSet;

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    CountRequest, EdgeShard, FacetRequest, FacetValue, Filter as EdgeFilter, Range as EdgeRange,
};

use super::convert;
use crate::error::{MemoryError, Result};
use crate::store::{time, Filter, Millis, Record, EXPIRES_KEY, NAMESPACE_KEY, VALID_FROM_KEY, VALID_UNTIL_KEY};

/// Namespaces tracked per shard; past this many, every search names its namespaces.
const MAX_TRACKED: usize = 1024;

/// What one shard holds, as far as it is known.
#[derive(Debug)]
pub(crate) struct Contents {
    /// Every namespace the shard may hold; `None` when not known (too many).
    namespaces: Option<HashSet<String>>,
    /// Whether the shard may hold a record with a validity bound or an expiry.
    bounded: bool,
}

impl Contents {
    /// Nothing known: every condition stays (until [`Contents::survey`]).
    pub(crate) fn unknown() -> Self {
        Self { namespaces: None, bounded: true }
    }

    /// What `shard` holds, read from its payload indexes (namespace keyword, validity
    /// integers): its namespaces' values and a count of its bounded records. Complete
    /// because the store never sets `prevent_unoptimized` (no point is deferred, left out of
    /// the index's counts until an optimization makes it visible).
    pub(crate) fn survey(shard: &EdgeShard) -> Result<Self> {
        let facet = shard
            .facet(FacetRequest {
                key: convert::json_path(NAMESPACE_KEY),
                limit: MAX_TRACKED + 1,
                filter: None,
                exact: false,
            })
            .map_err(MemoryError::store)?;
        let names: HashSet<String> = facet
            .hits
            .into_iter()
            .filter_map(|hit| match hit.value {
                FacetValue::Keyword(name) => Some(name),
                _ => None,
            })
            .collect();
        let namespaces = (names.len() <= MAX_TRACKED).then_some(names);
        let bounded = shard
            .count(CountRequest { filter: Some(bounded_filter()), exact: true })
            .map_err(MemoryError::store)?
            > 0;
        Ok(Self { namespaces, bounded })
    }

    /// What the shard holds once `records` of `namespace` are in it, when that is more than
    /// now; `None` when nothing changes.
    pub(crate) fn after_upsert<'a>(&self, namespace: &str, records: impl IntoIterator<Item = &'a Record>) -> Option<Self> {
        let bounded = self.bounded || records.into_iter().any(|r| r.validity != Default::default());
        let namespaces = match &self.namespaces {
            Some(names) if !names.contains(namespace) => {
                let mut names = names.clone();
                names.insert(namespace.to_string());
                (names.len() <= MAX_TRACKED).then_some(names)
            }
            names => names.clone(),
        };
        (bounded != self.bounded || namespaces != self.namespaces).then_some(Self { namespaces, bounded })
    }

    /// The filter of a search of `namespaces`, as of `as_of` at `now`, with the caller's
    /// `filter`, less the conditions every point of the shard meets; `None` when none is left.
    pub(crate) fn filter(&self, namespaces: &[String], filter: Option<&Filter>, as_of: Millis, now: Millis) -> Option<EdgeFilter> {
        let mut must = Vec::new();
        let all_named = self.namespaces.as_ref().is_some_and(|held| held.iter().all(|n| namespaces.contains(n)));
        if !all_named {
            must.push(convert::namespaces_condition(namespaces));
        }
        if let Some(filter) = filter {
            must.extend(filter.must.iter().map(convert::to_condition));
        }
        // Unbounded records are stored as [MIN, MAX) expiring at MAX: they pass the three
        // conditions for every time strictly inside that range.
        let admits_unbounded = (time::MIN..time::MAX).contains(&as_of) && now < time::MAX;
        if self.bounded || !admits_unbounded {
            must.extend(convert::valid_conditions(as_of, now));
        }
        (!must.is_empty()).then_some(EdgeFilter { should: None, min_should: None, must: Some(must), must_not: None })
    }
}

/// Records with a bound: a start after MIN, an end before MAX, or an expiry.
fn bounded_filter() -> EdgeFilter {
    let range = |key: &str, range: EdgeRange<OrderedFloat<f64>>| convert::range(key, range);
    let (min, max) = (Some(OrderedFloat(time::MIN as f64)), Some(OrderedFloat(time::MAX as f64)));
    let none = EdgeRange { gt: None, gte: None, lt: None, lte: None };
    EdgeFilter {
        should: Some(vec![
            range(VALID_FROM_KEY, EdgeRange { gt: min, ..none }),
            range(VALID_UNTIL_KEY, EdgeRange { lt: max, ..none }),
            range(EXPIRES_KEY, EdgeRange { lt: max, ..none }),
        ]),
        min_should: None,
        must: None,
        must_not: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Validity;

    fn record(validity: Validity) -> Record {
        Record { id: "a".into(), vector: vec![1.0], text: String::new(), metadata: Default::default(), validity }
    }

    fn conditions(filter: Option<EdgeFilter>) -> usize {
        filter.and_then(|f| f.must).map_or(0, |m| m.len())
    }

    #[test]
    fn only_conditions_every_point_meets_are_left_out() {
        let ns = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let empty = Contents { namespaces: Some(HashSet::new()), bounded: false };
        let one = empty.after_upsert("a", [&record(Validity::default())]).expect("a new namespace");
        assert!(one.after_upsert("a", [&record(Validity::default())]).is_none(), "nothing new");
        // One namespace, unbounded: no condition left for a search of it (or of more).
        assert_eq!(conditions(one.filter(&ns(&["a"]), None, 0, 0)), 0);
        assert_eq!(conditions(one.filter(&ns(&["a", "b"]), None, 0, 0)), 0);
        // Another namespace searched, or as of the far end of time: the conditions stay.
        assert_eq!(conditions(one.filter(&ns(&["b"]), None, 0, 0)), 1);
        assert_eq!(conditions(one.filter(&ns(&["a"]), None, time::MAX, 0)), 3);
        let two = one.after_upsert("b", [&record(Validity::default())]).expect("a second namespace");
        assert_eq!(conditions(two.filter(&ns(&["a"]), None, 0, 0)), 1);
        // A record with an expiry makes the shard bounded for good.
        let bounded = two.after_upsert("b", [&record(Validity { expires_at: Some(5), ..Default::default() })]).expect("bounded");
        assert_eq!(conditions(bounded.filter(&ns(&["a", "b"]), None, 0, 0)), 3);
        assert_eq!(conditions(Contents::unknown().filter(&ns(&["a"]), None, 0, 0)), 4);
    }
}
