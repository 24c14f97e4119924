//! Applying journaled operations to the shards, and reading records back.

use std::collections::HashMap;

use qdrant_edge::{
    CountRequest, PointId, PointInsertOperations, PointOperations, PointStructPersisted,
    Record as EdgeRecord, UpdateOperation, WithPayloadInterface, WithVector,
};

use super::convert;
use super::super::journal::JournalOp;
use super::super::{point_uuid, shard_of, Record};
use super::Inner;
use crate::error::{MemoryError, Result};

impl Inner {
    /// Applies one operation to the shards, in parallel; returns the records it touched.
    /// Callers hold the journal lock.
    pub(super) fn apply(&self, op: &JournalOp) -> Result<u64> {
        let n = self.shards.len();
        match op {
            JournalOp::Upsert { namespace, records } => {
                let mut per_shard: Vec<Vec<&Record>> = vec![Vec::new(); n];
                for record in records {
                    per_shard[shard_of(&point_uuid(namespace, &record.id), n)].push(record);
                }
                self.par_shards(|i, shard| {
                    if per_shard[i].is_empty() {
                        return Ok(0);
                    }
                    // Each shard's thread makes its own points (the BM25 vectors included).
                    let points: Vec<PointStructPersisted> =
                        per_shard[i].iter().map(|r| convert::to_point(namespace, r)).collect();
                    let count = points.len() as u64;
                    let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                        PointInsertOperations::PointsList(points),
                    ));
                    // Writes are serialised (the journal lock), so what is read here stays.
                    let wider = shard.contents().after_upsert(namespace, per_shard[i].iter().copied());
                    match wider {
                        // Widened before the points go in (kept if they fail half-way), and
                        // no search runs between the two.
                        Some(wider) => {
                            let mut contents = shard.contents.write().unwrap_or_else(|p| p.into_inner());
                            *contents = wider;
                            shard.edge.update(op).map_err(MemoryError::store)?;
                        }
                        None => shard.edge.update(op).map_err(MemoryError::store)?,
                    }
                    shard.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(count)
                })
            }
            JournalOp::DeleteIds { namespace, ids } => {
                let mut per_shard: Vec<Vec<PointId>> = vec![Vec::new(); n];
                for id in ids {
                    let uuid = point_uuid(namespace, id);
                    per_shard[shard_of(&uuid, n)].push(PointId::Uuid(uuid));
                }
                self.par_shards(|i, shard| {
                    let ids = &per_shard[i];
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    let existing = shard
                        .edge
                        .retrieve(ids, Some(WithPayloadInterface::Bool(false)), Some(WithVector::Bool(false)))
                        .map_err(MemoryError::store)?
                        .len();
                    if existing > 0 {
                        let op = UpdateOperation::PointOperation(PointOperations::DeletePoints {
                            ids: ids.clone(),
                        });
                        shard.edge.update(op).map_err(MemoryError::store)?;
                        shard.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(existing as u64)
                })
            }
            JournalOp::DeleteFilter { namespace, filter } => {
                self.delete_matching(convert::to_filter(namespace, filter.as_ref()))
            }
            JournalOp::DeleteExpired { namespace, now } => {
                self.delete_matching(convert::expired_filter(namespace.as_deref(), *now))
            }
        }
    }

    fn delete_matching(&self, filter: qdrant_edge::Filter) -> Result<u64> {
        self.par_shards(|_, shard| {
            let matching = shard
                .edge
                .count(CountRequest { filter: Some(filter.clone()), exact: true })
                .map_err(MemoryError::store)?;
            if matching > 0 {
                let op = UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter.clone()),
                );
                shard.edge.update(op).map_err(MemoryError::store)?;
                shard.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(matching as u64)
        })
    }

    fn par_shards<F>(&self, f: F) -> Result<u64>
    where
        F: Fn(usize, &super::Shard) -> Result<u64> + Sync,
    {
        let results: Vec<Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter()
                .enumerate()
                .map(|(i, shard)| {
                    let f = &f;
                    scope.spawn(move || f(i, shard))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(MemoryError::store("shard worker panicked"))))
                .collect()
        });
        results.into_iter().sum()
    }

    /// Records by id, in the order asked.
    pub(super) fn get(&self, namespace: &str, ids: &[String], with_vectors: bool) -> Result<Vec<Record>> {
        let n = self.shards.len();
        let mut per_shard: Vec<Vec<PointId>> = vec![Vec::new(); n];
        let points: Vec<PointId> = ids.iter().map(|id| PointId::Uuid(point_uuid(namespace, id))).collect();
        for point in &points {
            let PointId::Uuid(uuid) = point else { unreachable!() };
            per_shard[shard_of(uuid, n)].push(*point);
        }
        let mut found: HashMap<PointId, EdgeRecord> = HashMap::new();
        for (i, ids) in per_shard.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let records = self.shards[i]
                .edge
                .retrieve(ids, Some(WithPayloadInterface::Bool(true)), Some(WithVector::Bool(with_vectors)))
                .map_err(MemoryError::store)?;
            found.extend(records.into_iter().map(|r| (r.id, r)));
        }
        Ok(points.iter().filter_map(|p| found.remove(p)).map(record_from_internal).collect())
    }
}

/// A domain record from a stored one.
pub(super) fn record_from_internal(record: EdgeRecord) -> Record {
    let fields = convert::from_payload(record.payload.as_ref());
    Record {
        id: fields.id,
        vector: convert::dense_vector(record.vector),
        text: fields.text,
        metadata: fields.metadata,
        validity: fields.validity,
    }
}
