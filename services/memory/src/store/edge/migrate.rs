//! Migration of a format-1 data directory (dense vectors only, records without validity) to
//! format 2, when it is opened.
//!
//! The old shards and journal are set aside (`shards.v1`, `journal.v1.wal`), new shards are
//! made, every old record is copied in (its BM25 vector computed from its text, valid always)
//! and the old journal's writes applied after it, the shards are flushed, and only then does
//! the directory's record say format 2 and the old files go. A crash before that point starts
//! the migration over from the set-aside files at the next open; nothing is lost either way.

use std::collections::BTreeMap;
use std::path::Path;

use qdrant_edge::{EdgeShard, ScrollRequest, WithPayloadInterface, WithVector};

use super::super::journal::{Journal, JournalOp};
use super::{ops, Inner, JOURNAL_FILE, SHARDS_DIR};
use crate::error::{MemoryError, Result};
use crate::store::{Record, NAMESPACE_KEY};

const OLD_SHARDS: &str = "shards.v1";
const OLD_JOURNAL: &str = "journal.v1.wal";
const PAGE: usize = 1000;

fn io(dir: &Path) -> impl Fn(std::io::Error) -> MemoryError + '_ {
    move |e| MemoryError::DataDir { path: dir.to_path_buf(), reason: format!("migrating from format 1: {e}") }
}

/// Moves the format-1 shards and journal aside (once), and removes anything an interrupted
/// migration left in their places.
pub(super) fn set_aside(dir: &Path) -> Result<()> {
    for (current, old) in [(SHARDS_DIR, OLD_SHARDS), (JOURNAL_FILE, OLD_JOURNAL)] {
        let (current, old) = (dir.join(current), dir.join(old));
        if old.exists() {
            if current.is_dir() {
                std::fs::remove_dir_all(&current).map_err(io(dir))?;
            } else if current.exists() {
                std::fs::remove_file(&current).map_err(io(dir))?;
            }
        } else if current.exists() {
            std::fs::rename(&current, &old).map_err(io(dir))?;
        }
    }
    tracing::warn!(data_dir = %dir.display(), "migrating the data directory from format 1 (dense only) to format 2 (BM25 and validity)");
    Ok(())
}

/// Copies every record of the set-aside shards into `inner`, then applies the set-aside
/// journal, and flushes.
pub(super) fn copy_in(inner: &Inner, dir: &Path) -> Result<()> {
    let mut copied = 0usize;
    let old = dir.join(OLD_SHARDS);
    let mut shard_dirs: Vec<_> = match std::fs::read_dir(&old) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(dir)(e)),
    };
    shard_dirs.sort();
    for path in shard_dirs {
        let shard = EdgeShard::load(&path, None).map_err(|e| MemoryError::DataDir {
            path: path.clone(),
            reason: format!("cannot open the format-1 shard to migrate it: {e}"),
        })?;
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(PAGE),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            };
            let (points, next) = shard.scroll(request).map_err(MemoryError::store)?;
            let mut by_namespace: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            for point in points {
                let namespace = point
                    .payload
                    .as_ref()
                    .and_then(|p| p.0.get(NAMESPACE_KEY))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                by_namespace.entry(namespace).or_default().push(ops::record_from_internal(point));
            }
            for (namespace, records) in by_namespace {
                copied += records.len();
                inner.apply(&JournalOp::Upsert { namespace, records })?;
            }
            match next {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
    }
    let (_, pending) = Journal::open_v1(&dir.join(OLD_JOURNAL))?;
    for op in &pending {
        inner.apply(op)?;
    }
    inner.flush_shards();
    tracing::info!(records = copied, journaled = pending.len(), "format-1 records migrated");
    Ok(())
}

/// Removes the set-aside format-1 files once the directory says format 2.
pub(super) fn clean_up(dir: &Path) -> Result<()> {
    let old = dir.join(OLD_SHARDS);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(dir))?;
    }
    let journal = dir.join(OLD_JOURNAL);
    if journal.exists() {
        std::fs::remove_file(&journal).map_err(io(dir))?;
    }
    Ok(())
}
