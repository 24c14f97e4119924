//! The output file: whole lines appended one at a time, read back on a rerun to skip what is
//! done, rewritten (atomically) only to drop error records for `--retry-failed`, and merged
//! across shards.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// What a previous run wrote.
#[derive(Debug, Default)]
pub struct Done {
    /// Ids with a record.
    pub ids: HashSet<String>,
    /// Of them, how many are error records.
    pub errors: usize,
}

fn record_id(line: &str) -> Option<(String, bool)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let id = v.get("id")?.as_str()?.to_string();
    Some((id, v.get("status").and_then(Value::as_str) == Some("error")))
}

/// Reads the records of `path` (none when it does not exist). A last line without its newline
/// can only be a write cut short: it is cut off. With `retry_failed`, error records are
/// dropped (the file is rewritten through a temporary file and a rename) so their questions
/// are asked again.
pub fn prepare(path: &Path, retry_failed: bool) -> anyhow::Result<Done> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Done::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read the output file {}", path.display())),
    };
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    if whole.len() != text.len() {
        tracing::warn!(path = %path.display(), bytes = text.len() - whole.len(), "cutting off a partial last line");
    }
    let mut done = Done::default();
    let mut kept = String::with_capacity(whole.len());
    for (i, line) in whole.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (id, is_error) = record_id(line)
            .with_context(|| format!("{} line {} is not a batch record (JSON with `id` and `status`); is it the right output file?", path.display(), i + 1))?;
        if is_error && retry_failed {
            continue;
        }
        if done.ids.insert(id) {
            done.errors += usize::from(is_error);
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept.len() != text.len() {
        replace(path, kept.as_bytes())?;
    }
    Ok(done)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Opens `path` for appending whole lines.
pub fn open_append(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open the output file {}", path.display()))
}

/// Appends one record as one line with one write.
pub fn append(file: &mut std::fs::File, record: &Value) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    file.write_all(&line).context("cannot append to the output file")
}

/// Whether `id` belongs to shard `index` of `count` (FNV-1a: stable across runs and builds).
pub fn in_shard(id: &str, index: u64, count: u64) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % count == index
}

/// Parses `i/N`.
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("expected INDEX/COUNT, such as 0/4")?;
    let (i, n): (u64, u64) = (i.trim().parse().map_err(|_| "INDEX must be a number")?, n.trim().parse().map_err(|_| "COUNT must be a number")?);
    if n == 0 || i >= n {
        return Err(format!("INDEX must be below COUNT (0..{n})"));
    }
    Ok((i, n))
}

/// `memgpt batch merge`: one record per id from several outputs (an answer beats an error
/// record; among equals the first file wins), written atomically.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' output files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged file.
    #[arg(long)]
    pub output: PathBuf,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let mut order: Vec<String> = Vec::new();
    let mut best: HashMap<String, (bool, String)> = HashMap::new();
    let mut duplicates = 0usize;
    for path in &args.inputs {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{} line {}", path.display(), i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let Some((id, is_error)) = record_id(&line) else {
                tracing::warn!(file = %path.display(), line = i + 1, "skipping a line that is not a batch record (cut short?)");
                continue;
            };
            match best.get(&id) {
                None => {
                    order.push(id.clone());
                    best.insert(id, (is_error, line));
                }
                Some((true, _)) if !is_error => {
                    duplicates += 1;
                    best.insert(id, (false, line));
                }
                Some(_) => duplicates += 1,
            }
        }
    }
    let mut out = String::new();
    let mut errors = 0;
    for id in &order {
        let (is_error, line) = &best[id];
        errors += usize::from(*is_error);
        out.push_str(line);
        out.push('\n');
    }
    replace(&args.output, out.as_bytes())?;
    eprintln!("merged {} records ({errors} errors) from {} files into {}; {duplicates} duplicates dropped", order.len(), args.inputs.len(), args.output.display());
    Ok(())
}
