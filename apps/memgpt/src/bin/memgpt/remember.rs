//! `memgpt remember`: files, folders (walked recursively), JSONL files (one document a line:
//! `id`, `text`, optional `metadata`) or standard input, sent in batches with a progress bar.
//! PDF, HTML and Markdown files (by extension) are sent as files for the gateway to read:
//! their text layer, main text, headings, title and page numbers.
//! Each document is stored whole or not at all; a bad one is reported by name and the rest go on.
//! `--facts` files hold facts of the knowledge graph, one a line: `subject`, `relation`,
//! `object`, optional `metadata`, `valid_from`, `valid_until` (the same fact twice is one).

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use memgpt_proto::gateway::v1 as gw;

use crate::client::{describe, ClientArgs};

/// Options of `memgpt remember`.
#[derive(Debug, clap::Args)]
pub struct RememberArgs {
    /// Files, folders, or `-` for standard input. `.jsonl` files hold one document a line.
    #[arg(required_unless_present = "facts")]
    pub inputs: Vec<PathBuf>,
    /// JSONL files of facts (`subject`, `relation`, `object` a line; repeatable).
    #[arg(long, value_name = "FILE")]
    pub facts: Vec<PathBuf>,
    /// Namespace to store into.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Read standard input as JSONL (otherwise it is one document named by --id).
    #[arg(long)]
    pub jsonl: bool,
    /// Document id of standard input.
    #[arg(long)]
    pub id: Option<String>,
    /// Metadata `key=value` added to every document (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Documents per Remember call.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Remember calls in flight.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Ask the generator to precompute the memories' KV caches (fused mode).
    #[arg(long)]
    pub warm: bool,
    /// Seconds the documents live; then no search finds them and the memory service deletes
    /// them (unset: until forgotten).
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u64>,
    /// When the documents start to hold (RFC 3339), unless a JSONL line sets its own.
    #[arg(long)]
    pub valid_from: Option<String>,
    /// When they stop holding (RFC 3339), unless a JSONL line sets its own; they stay stored
    /// and are found as of earlier times.
    #[arg(long)]
    pub valid_until: Option<String>,
}

/// Bytes of documents past which a batch is sent (files can be large; a call is at most the
/// gateway's message size, 16 MiB by default).
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// One document read from the input, or why it could not be.
type Item = Result<(gw::Document, u64), (String, String)>;

#[derive(serde::Deserialize)]
struct Line {
    id: String,
    text: String,
    /// `text/markdown` or `text/html` to read the text as such.
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_until: String,
}

#[derive(serde::Deserialize)]
struct FactLine {
    subject: String,
    relation: String,
    object: String,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_until: String,
}

/// The facts of `--facts` files, each named `file:line`, or why a line could not be read.
fn fact_items(args: &RememberArgs) -> anyhow::Result<Vec<Result<(String, gw::Fact), (String, String)>>> {
    let mut out = Vec::new();
    for path in &args.facts {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the facts", path.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let name = format!("{}:{}", path.display(), i + 1);
            out.push(match serde_json::from_str::<FactLine>(line) {
                Ok(f) => {
                    let (valid_from, valid_until) = (or(f.valid_from, &args.valid_from), or(f.valid_until, &args.valid_until));
                    let fact = gw::Fact { subject: f.subject, relation: f.relation, object: f.object, metadata: metadata(f.metadata), valid_from, valid_until };
                    Ok((name, fact))
                }
                Err(e) => Err((name, format!("not a JSON object with string `subject`, `relation` and `object`: {e}"))),
            });
        }
    }
    Ok(out)
}

fn or(value: String, default: &Option<String>) -> String {
    if value.is_empty() {
        default.clone().unwrap_or_default()
    } else {
        value
    }
}

/// Metadata values other than strings are kept as their JSON text.
fn metadata(m: HashMap<String, serde_json::Value>) -> HashMap<String, String> {
    m.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect()
}

fn jsonl_items(reader: impl BufRead, source: String) -> impl Iterator<Item = Item> {
    reader.split(b'\n').enumerate().filter_map(move |(i, line)| {
        let name = format!("{source}:{}", i + 1);
        let bytes = match line {
            Ok(b) => b,
            Err(e) => return Some(Err((name, format!("read error: {e}")))),
        };
        let size = bytes.len() as u64 + 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(match serde_json::from_slice::<Line>(&bytes) {
            Ok(l) => {
                let doc = gw::Document { id: l.id, text: l.text, media_type: l.media_type, metadata: metadata(l.metadata), valid_from: l.valid_from, valid_until: l.valid_until, ..Default::default() };
                Ok((doc, size))
            }
            Err(e) => Err((name, format!("not a JSON object with string `id` and `text`: {e}"))),
        })
    })
}

fn file_item(path: &Path) -> Item {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| (name.clone(), format!("cannot read: {e}")))?;
    let metadata = HashMap::from([("source".to_string(), name.clone())]);
    // PDF, HTML and Markdown go as files: the gateway reads them (pages, headings, title).
    let media_type = path.extension().and_then(|e| memgpt_gateway::ingest::extension(&e.to_string_lossy())).filter(|m| *m != "text/plain");
    if let Some(media_type) = media_type {
        let size = bytes.len() as u64;
        let doc = gw::Document { id: name.replace('#', "_"), content: bytes, media_type: media_type.into(), metadata, ..Default::default() };
        return Ok((doc, size));
    }
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return Err((name, "binary file (holds NUL bytes); not remembered".into()));
    }
    let text = String::from_utf8(bytes).map_err(|e| (name.clone(), format!("not UTF-8 text: {e}")))?;
    let size = text.len() as u64;
    Ok((gw::Document { id: name.replace('#', "_"), text, metadata, ..Default::default() }, size))
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    for e in entries {
        walk(&e, out)?;
    }
    Ok(())
}

/// The documents of all inputs, lazily, and their total size in bytes when known.
fn items(args: &RememberArgs) -> anyhow::Result<(Box<dyn Iterator<Item = Item>>, Option<u64>)> {
    let mut files = Vec::new();
    let mut stdin = false;
    for input in &args.inputs {
        if input.as_os_str() == "-" {
            stdin = true;
        } else {
            walk(input, &mut files)?;
        }
    }
    if stdin && !args.jsonl && args.id.is_none() {
        anyhow::bail!("standard input is one document: give it an --id (or --jsonl for one document a line)");
    }
    let total = (!stdin).then(|| files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum());
    let mut iter: Box<dyn Iterator<Item = Item>> = Box::new(std::iter::empty());
    for f in files {
        let is_jsonl = f.extension().is_some_and(|e| e == "jsonl");
        let next: Box<dyn Iterator<Item = Item>> = if is_jsonl {
            match std::fs::File::open(&f) {
                Ok(file) => Box::new(jsonl_items(std::io::BufReader::new(file), f.display().to_string())),
                Err(e) => Box::new(std::iter::once(Err((f.display().to_string(), format!("cannot open: {e}"))))),
            }
        } else {
            Box::new(std::iter::once_with(move || file_item(&f)))
        };
        iter = Box::new(iter.chain(next));
    }
    if stdin {
        let next: Box<dyn Iterator<Item = Item>> = if args.jsonl {
            Box::new(jsonl_items(std::io::BufReader::new(std::io::stdin()), "stdin".into()))
        } else {
            let id = args.id.clone().unwrap_or_default();
            Box::new(std::iter::once_with(move || {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| ("stdin".to_string(), format!("not UTF-8 text: {e}")))?;
                let size = text.len() as u64;
                Ok((gw::Document { id, text, metadata: HashMap::new(), ..Default::default() }, size))
            }))
        };
        iter = Box::new(iter.chain(next));
    }
    Ok((iter, total))
}

/// The gateway's rules for a document, checked before sending so that one bad document does
/// not fail the others of its batch.
fn check(doc: &gw::Document) -> Result<(), String> {
    if doc.id.is_empty() || doc.id.len() > 200 || doc.id.chars().any(|c| c.is_control() || c == '#') {
        return Err("the id must be 1 to 200 bytes without control characters or `#`".into());
    }
    if doc.content.is_empty() && doc.text.trim().is_empty() {
        return Err("the file is empty".into());
    }
    Ok(())
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub fn progress(total: Option<u64>, unit: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if unit == "bytes" {
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}"
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
    bar
}

pub fn remember(client: ClientArgs, args: RememberArgs) -> anyhow::Result<()> {
    let extra = args
        .meta
        .iter()
        .map(|m| m.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).with_context(|| format!("--meta `{m}`: expected KEY=VALUE")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (items, total) = items(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let gateway = client.connect().await?;
        let bar = progress(total, "bytes");
        let (mut stored, mut chunks, mut warmed, mut failed) = (0u64, 0u64, 0u64, Vec::<(String, String)>::new());
        let mut batches = Vec::new();
        let mut current: Vec<(gw::Document, u64)> = Vec::new();
        for item in items {
            match item {
                Ok((doc, _)) if check(&doc).is_err() => {
                    failed.push((doc.id.clone(), check(&doc).unwrap_err()));
                }
                Ok((mut doc, size)) => {
                    doc.metadata.extend(extra.iter().cloned());
                    doc.valid_from = or(doc.valid_from, &args.valid_from);
                    doc.valid_until = or(doc.valid_until, &args.valid_until);
                    current.push((doc, size));
                    if current.len() >= args.batch.max(1) || current.iter().map(|(_, s)| s).sum::<u64>() >= BATCH_BYTES {
                        batches.push(std::mem::take(&mut current));
                    }
                }
                Err(bad) => failed.push(bad),
            }
        }
        if !current.is_empty() {
            batches.push(current);
        }
        let request = |documents, facts| gw::RememberRequest { namespace: args.namespace.clone(), documents, facts, warm: args.warm, ttl_seconds: args.ttl.unwrap_or(0) };
        let mut requests: Vec<(gw::RememberRequest, Vec<String>, u64)> = batches
            .into_iter()
            .map(|batch| {
                let size: u64 = batch.iter().map(|(_, s)| s).sum();
                let ids: Vec<String> = batch.iter().map(|(d, _)| d.id.clone()).collect();
                (request(batch.into_iter().map(|(d, _)| d).collect(), Vec::new()), ids, size)
            })
            .collect();
        let mut facts = Vec::new();
        for item in fact_items(&args)? {
            match item {
                Ok((name, mut fact)) => {
                    fact.metadata.extend(extra.iter().cloned());
                    facts.push((name, fact));
                }
                Err(bad) => failed.push(bad),
            }
        }
        for batch in facts.chunks(args.batch.max(1)) {
            let names = batch.iter().map(|(n, _)| n.clone()).collect();
            requests.push((request(Vec::new(), batch.iter().map(|(_, f)| f.clone()).collect()), names, 0));
        }
        let calls = requests.into_iter().map(|(req, ids, size)| {
            let mut gateway = gateway.clone();
            async move { (gateway.remember(req).await, ids, size) }
        });
        let mut calls = futures::stream::iter(calls).buffer_unordered(args.concurrency.max(1));
        while let Some((outcome, ids, size)) = calls.next().await {
            bar.inc(size);
            match outcome {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    warmed += u64::from(resp.warmed_chunks);
                    for r in resp.results {
                        if r.status == gw::DocumentStatus::Stored as i32 {
                            stored += 1;
                            chunks += u64::from(r.chunks);
                        } else {
                            failed.push((r.document_id, r.error));
                        }
                    }
                }
                // A call refused whole (bad namespace, auth, size): every document of it failed.
                Err(status) => failed.extend(ids.into_iter().map(|id| (id, describe(&status)))),
            }
        }
        bar.finish_and_clear();
        for (name, why) in &failed {
            eprintln!("not remembered: {name}: {why}");
        }
        let what = if args.facts.is_empty() { "documents" } else { "documents and facts" };
        println!("remembered {stored} {what} ({chunks} chunks) in namespace `{}`; {} failed", args.namespace, failed.len());
        if args.warm {
            println!("warmed {warmed} of {chunks} chunks on the generators (fused mode)");
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{} documents were not remembered", failed.len())
        }
    })
}
