//! The edge store's own write-ahead journal.
//!
//! Qdrant Edge 0.7 writes its WAL but does not replay it when a shard is loaded, and flushes
//! segments only when asked, so an acknowledged write would not survive `kill -9` on its own.
//! Every write is therefore appended here (length, CRC-32, bincode) and `fdatasync`ed before it
//! is applied to the shards and acknowledged. On open the journal is replayed (all operations
//! are idempotent, applied in their original order); after the shards are flushed at a
//! checkpoint it is truncated. A torn tail (a crash in the middle of an append) was never
//! acknowledged and is cut off.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Filter, Millis, Record};
use crate::error::{MemoryError, Result};

/// One journaled write.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum JournalOp {
    /// Insert or replace records.
    Upsert {
        /// Namespace.
        namespace: String,
        /// Records.
        records: Vec<Record>,
    },
    /// Delete records by id.
    DeleteIds {
        /// Namespace.
        namespace: String,
        /// Ids.
        ids: Vec<String>,
    },
    /// Delete the matching records of a namespace (no filter: the whole namespace).
    DeleteFilter {
        /// Namespace.
        namespace: String,
        /// Filter.
        filter: Option<Filter>,
    },
    /// Delete the records (of a namespace, or of all) expired by `now`.
    DeleteExpired {
        /// Namespace; `None`: every namespace.
        namespace: Option<String>,
        /// The time of the sweep (replay deletes what it deleted, no more).
        now: Millis,
    },
}

const HEADER: usize = 8;

/// An append-only journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal and returns it with the operations it holds.
    pub fn open(path: &Path) -> Result<(Self, Vec<JournalOp>)> {
        Self::open_format(path, false)
    }

    /// As `open`, for a journal a format-1 directory wrote (records without validity): its
    /// operations read as today's, each record valid always.
    pub fn open_v1(path: &Path) -> Result<(Self, Vec<JournalOp>)> {
        Self::open_format(path, true)
    }

    fn open_format(path: &Path, v1: bool) -> Result<(Self, Vec<JournalOp>)> {
        let io = |e: std::io::Error| MemoryError::DataDir {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (ops, valid) = if v1 {
            let (ops, valid) = decode_all::<legacy::Op>(&bytes);
            (ops.into_iter().map(JournalOp::from).collect(), valid)
        } else {
            decode_all::<JournalOp>(&bytes)
        };
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid,
                dropped_bytes = bytes.len() - valid,
                "journal has a torn tail from an interrupted write; cutting it off"
            );
            file.set_len(valid as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((Self { path: path.to_path_buf(), file, len: valid as u64 }, ops))
    }

    /// Appends one operation and makes it durable.
    pub fn append(&mut self, op: &JournalOp) -> Result<()> {
        let body = bincode::serialize(op).map_err(MemoryError::store)?;
        let mut frame = Vec::with_capacity(HEADER + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        let result = self.file.write_all(&frame).and_then(|()| self.file.sync_data());
        if let Err(err) = result {
            // Leave no partial frame behind for the next append to follow.
            let _ = self.file.set_len(self.len);
            return Err(MemoryError::Store(format!(
                "journal {} append failed: {err}",
                self.path.display()
            )));
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Bytes held.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Empties the journal; call only once every operation in it is flushed to the shards.
    pub fn truncate(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| MemoryError::Store(format!("journal truncate failed: {e}")))?;
        self.len = 0;
        Ok(())
    }
}

/// Decodes frames until the end or the first torn or corrupt frame; returns the operations and
/// the length of the valid prefix.
fn decode_all<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> (Vec<T>, usize) {
    let mut ops = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(body) != crc {
            break;
        }
        match bincode::deserialize(body) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
        at += HEADER + len;
    }
    (ops, at)
}

/// The operations of format 1, before records carried validity.
mod legacy {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::{Filter, JournalOp};

    #[derive(Deserialize)]
    pub struct Record {
        id: String,
        vector: Vec<f32>,
        text: String,
        metadata: BTreeMap<String, String>,
    }

    #[derive(Deserialize)]
    pub enum Op {
        Upsert { namespace: String, records: Vec<Record> },
        DeleteIds { namespace: String, ids: Vec<String> },
        DeleteFilter { namespace: String, filter: Option<Filter> },
    }

    impl From<Op> for JournalOp {
        fn from(op: Op) -> Self {
            match op {
                Op::Upsert { namespace, records } => JournalOp::Upsert {
                    namespace,
                    records: records
                        .into_iter()
                        .map(|r| super::Record {
                            id: r.id,
                            vector: r.vector,
                            text: r.text,
                            metadata: r.metadata,
                            validity: Default::default(),
                        })
                        .collect(),
                },
                Op::DeleteIds { namespace, ids } => JournalOp::DeleteIds { namespace, ids },
                Op::DeleteFilter { namespace, filter } => JournalOp::DeleteFilter { namespace, filter },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(id: &str) -> JournalOp {
        JournalOp::Upsert {
            namespace: "ns".into(),
            records: vec![Record {
                id: id.into(),
                vector: vec![0.5, 0.25],
                text: "t".into(),
                metadata: [("k".to_string(), "v".to_string())].into(),
                validity: Default::default(),
            }],
        }
    }

    #[test]
    fn replays_in_order_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        {
            let (mut j, ops) = Journal::open(&path).unwrap();
            assert!(ops.is_empty());
            j.append(&upsert("a")).unwrap();
            j.append(&JournalOp::DeleteIds { namespace: "ns".into(), ids: vec!["a".into()] })
                .unwrap();
            j.append(&upsert("b")).unwrap();
        }
        // Simulate a crash in the middle of a fourth append.
        let full = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(f);

        let (mut j, ops) = Journal::open(&path).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0], upsert("a"));
        assert_eq!(ops[2], upsert("b"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full, "torn tail cut off");
        j.append(&upsert("c")).unwrap();
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1.len(), 4);
    }

    #[test]
    fn a_corrupt_frame_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&upsert("a")).unwrap();
        j.append(&upsert("b")).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (j, ops) = Journal::open(&path).unwrap();
        assert_eq!(ops, vec![upsert("a")]);
        assert!(j.len() > 0);
    }

    #[test]
    fn truncate_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&upsert("a")).unwrap();
        j.truncate().unwrap();
        assert_eq!(j.len(), 0);
        j.append(&upsert("b")).unwrap();
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1, vec![upsert("b")]);
    }
}
