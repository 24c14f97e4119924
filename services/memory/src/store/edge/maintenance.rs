//! The edge store's maintenance, off the request path: payload indexes for the fields filters
//! use, and a thread that runs Qdrant Edge's optimizer (which builds the HNSW index) after
//! writes go quiet, then checkpoints (flushes the shards and truncates the journal).

use std::sync::atomic::Ordering;
use std::time::Instant;

use qdrant_edge::{FieldIndexOperations, PayloadFieldSchema, PayloadSchemaType, UpdateOperation};

use super::convert::{self, meta_path, num_path};
use super::Inner;
use crate::error::{MemoryError, Result};
use crate::store::{Filter, Predicate};

/// Range filters read the numeric copy, equality the string copy: index what the filter uses.
fn index_fields(filter: &Filter) -> impl Iterator<Item = (String, PayloadSchemaType)> + '_ {
    filter.must.iter().map(|c| match c.predicate {
        Predicate::Range { .. } => (num_path(&c.key).to_string(), PayloadSchemaType::Float),
        _ => (meta_path(&c.key).to_string(), PayloadSchemaType::Keyword),
    })
}

impl Inner {
    pub(super) fn queue_indexes(&self, filter: &Filter) {
        let mut indexed = self.indexed_keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending = self.pending_keys.lock().unwrap_or_else(|p| p.into_inner());
        for (path, _) in index_fields(filter) {
            if indexed.insert(path.clone()) {
                pending.push(path);
            }
        }
        if !pending.is_empty() {
            drop((indexed, pending));
            self.notify_write();
        }
    }

    pub(super) fn ensure_index(&self, path: &str, kind: PayloadSchemaType) -> Result<()> {
        let op = UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
            qdrant_edge::CreateIndex {
                field_name: convert::json_path(path),
                field_schema: Some(PayloadFieldSchema::FieldType(kind)),
            },
        ));
        for shard in &self.shards {
            if !shard.edge.info().payload_schema.keys().any(|k| k.to_string() == path) {
                shard.edge.update(op.clone()).map_err(MemoryError::store)?;
            }
        }
        self.indexed_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string());
        Ok(())
    }

    pub(super) fn total_points(&self) -> usize {
        self.shards.iter().map(|s| s.edge.info().points_count).sum()
    }

    pub(super) fn notify_write(&self) {
        let (lock, cvar) = &self.wake;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        cvar.notify_all();
    }

    pub(super) fn maintenance_loop(&self) {
        let (lock, cvar) = &self.wake;
        loop {
            let mut last = lock.lock().unwrap_or_else(|p| p.into_inner());
            // Sleep until a write happened and then a quiet period passed, or until stopped.
            loop {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                match *last {
                    Some(at) if at.elapsed() >= self.config.optimize_delay => break,
                    Some(at) => {
                        let left = self.config.optimize_delay - at.elapsed();
                        last = cvar.wait_timeout(last, left).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    None => last = cvar.wait(last).unwrap_or_else(|p| p.into_inner()),
                }
            }
            *last = None;
            drop(last);
            if let Err(err) = self.run_maintenance(false) {
                tracing::error!(error = %err, "edge maintenance failed; will retry after the next write");
            }
        }
    }

    /// Builds pending payload indexes, optimizes dirty shards, then checkpoints.
    pub(super) fn run_maintenance(&self, all: bool) -> Result<()> {
        let _guard = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let pending: Vec<String> =
            std::mem::take(&mut *self.pending_keys.lock().unwrap_or_else(|p| p.into_inner()));
        for path in pending {
            let kind = if path.starts_with(crate::store::NUM_KEY) {
                PayloadSchemaType::Float
            } else {
                PayloadSchemaType::Keyword
            };
            self.ensure_index(&path, kind)?;
            tracing::info!(field = %path, "payload index created");
        }
        for (i, shard) in self.shards.iter().enumerate() {
            if !(shard.dirty.swap(false, Ordering::SeqCst) || all) {
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let started = Instant::now();
            let changed = shard.edge.optimize().map_err(MemoryError::store)?;
            if changed {
                let info = shard.edge.info();
                tracing::info!(
                    shard = i,
                    points = info.points_count,
                    indexed = info.indexed_vectors_count,
                    segments = info.segments_count,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "shard optimized"
                );
            }
        }
        self.checkpoint_locked()
    }

    /// Flushes every shard, then empties the journal. Must not run beside `optimize` (edge's
    /// flush asserts its locks are free), so only the maintenance thread and shutdown call it;
    /// the journal lock keeps writes out meanwhile.
    pub(super) fn checkpoint(&self) -> Result<()> {
        let _guard = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_locked()
    }

    /// Flushes every shard to disk.
    pub(super) fn flush_shards(&self) {
        for shard in &self.shards {
            shard.edge.flush();
        }
    }

    pub(super) fn checkpoint_locked(&self) -> Result<()> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if journal.len() == 0 {
            return Ok(());
        }
        for shard in &self.shards {
            shard.edge.flush();
        }
        journal.truncate()
    }
}
