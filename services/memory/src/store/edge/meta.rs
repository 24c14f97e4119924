//! The data directory's record of how it was made (`memgpt-store.json`): format, dimension,
//! shard count and sparse scheme. A new directory gets one; reopening checks it, refusing a
//! dimension, shard count or sparse scheme it was not made with. The shard count may be left
//! out, and is then the directory's own.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::EdgeStoreConfig;
use crate::error::{MemoryError, Result};
use crate::store::lexical;

/// Shards of a new directory when none is asked for: fewer shards than cores, so that each
/// search's shards run in parallel, one per core, on the 2-core reference machine (1 shard
/// misses recall@10 0.98 at ef 32, 4 took twice the time: docs/benchmarks.md).
pub const DEFAULT_SHARDS: usize = 2;

pub(super) const META_FILE: &str = "memgpt-store.json";
/// Format 2: a BM25 sparse vector beside the dense one, and validity times on every record.
/// Format 1 (dense only) is migrated when opened.
pub(super) const FORMAT: u32 = 2;

/// What the directory was created with; a restart with other values is refused.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct StoreMeta {
    format: u32,
    dimension: usize,
    shards: usize,
    /// The sparse vectors' scheme (`lexical::scheme`); absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sparse: Option<String>,
}

impl StoreMeta {
    pub(super) fn current(config: &EdgeStoreConfig) -> Self {
        Self { format: FORMAT, dimension: config.dimension, shards: config.shards.unwrap_or(DEFAULT_SHARDS), sparse: Some(lexical::scheme()) }
    }
}

pub(super) fn write_meta(dir: &Path, meta: &StoreMeta) -> Result<()> {
    let path = dir.join(META_FILE);
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(meta).map_err(MemoryError::store)?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| MemoryError::DataDir { path: dir.to_path_buf(), reason: e.to_string() })
}

/// Checks the directory's record of how it was made against the configuration (a new
/// directory gets one); returns its format and shard count.
pub(super) fn check_meta(dir: &Path, config: &EdgeStoreConfig) -> Result<(u32, usize)> {
    let path = dir.join(META_FILE);
    let wanted = StoreMeta::current(config);
    let refuse = |reason: String| MemoryError::DataDir { path: dir.to_path_buf(), reason };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: StoreMeta = serde_json::from_slice(&bytes)
                .map_err(|e| refuse(format!("{META_FILE} is unreadable: {e}")))?;
            if found.dimension != wanted.dimension {
                return Err(refuse(format!(
                    "it holds vectors of dimension {}; refusing to open it with dimension {}",
                    found.dimension, wanted.dimension
                )));
            }
            match config.shards {
                Some(asked) if asked != found.shards => {
                    return Err(refuse(format!(
                        "it was created with {} shards; refusing to open it with {asked} (resharding is not supported; leave the shard count out to use the directory's)",
                        found.shards
                    )))
                }
                _ => {}
            }
            match found.format {
                1 => Ok((1, found.shards)),
                FORMAT if found.sparse == wanted.sparse => Ok((FORMAT, found.shards)),
                FORMAT => Err(refuse(format!(
                    "its sparse vectors were made as `{}`, this version makes `{}`; remember the documents again into a new data directory",
                    found.sparse.unwrap_or_default(),
                    wanted.sparse.unwrap_or_default()
                ))),
                other => Err(refuse(format!(
                    "it has format {other}, from a newer memgpt-memory; this one reads formats 1 and {FORMAT}"
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_meta(dir, &wanted)?;
            Ok((FORMAT, wanted.shards))
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(dir: &Path, shards: Option<usize>, dimension: usize) -> EdgeStoreConfig {
        EdgeStoreConfig {
            data_dir: dir.to_path_buf(),
            shards,
            dimension,
            max_inflight_writes: 1,
            hnsw_ef: 32,
            optimize_delay: Duration::ZERO,
            segments_per_shard: 1,
        }
    }

    #[test]
    fn a_directory_keeps_its_shard_count_and_refuses_another() {
        let tmp = tempfile::tempdir().unwrap();
        let (new, made) = (tmp.path().join("new"), tmp.path().join("made"));
        std::fs::create_dir_all(&new).unwrap();
        std::fs::create_dir_all(&made).unwrap();

        assert_eq!(check_meta(&new, &config(&new, None, 8)).unwrap(), (FORMAT, DEFAULT_SHARDS), "a new directory gets the default");
        assert_eq!(check_meta(&new, &config(&new, None, 8)).unwrap(), (FORMAT, DEFAULT_SHARDS));
        assert_eq!(check_meta(&made, &config(&made, Some(5), 8)).unwrap(), (FORMAT, 5), "or the count asked for");
        assert_eq!(check_meta(&made, &config(&made, None, 8)).unwrap(), (FORMAT, 5), "left out: the directory's own");
        assert_eq!(check_meta(&made, &config(&made, Some(5), 8)).unwrap(), (FORMAT, 5));

        let refused = check_meta(&made, &config(&made, Some(DEFAULT_SHARDS), 8)).unwrap_err().to_string();
        assert!(refused.contains("created with 5 shards") && refused.contains(&format!("with {DEFAULT_SHARDS}")), "{refused}");
        let refused = check_meta(&made, &config(&made, None, 16)).unwrap_err().to_string();
        assert!(refused.contains("dimension 8") && refused.contains("dimension 16"), "{refused}");
    }
}
