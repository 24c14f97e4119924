//! `memgpt eval retrieval`: BEIR-format retrieval evaluation with the sentence encoder.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use memgpt_models::encoder::bert::{Bert, Precision};

use memgpt_stack::scoring::metrics;

use crate::ModelArgs;

/// Options of `memgpt eval retrieval`.
#[derive(Debug, clap::Args)]
pub struct RetrievalArgs {
    /// BEIR folder: corpus.jsonl or corpus.jsonl.gz, queries.jsonl, qrels/test.tsv.
    #[arg(long)]
    data: PathBuf,
    /// Encoder compute mode: f32 (exact) or bf16 (bf16 matrix products, f32 norms).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Encoder folder under the models directory.
    #[arg(long, default_value = memgpt_models::DEFAULT_ENCODER)]
    encoder: String,
    /// Keep only the judged-relevant documents plus this many others (a quick subset).
    #[arg(long)]
    corpus_limit: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn open_text(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::new(reader)))
}

fn first_existing(dir: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.exists()).with_context(|| format!("{} holds none of {names:?}", dir.display()))
}

pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    open_text(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map(|l| !l.trim().is_empty()).unwrap_or(true))
        .map(|(i, line)| {
            let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            serde_json::from_str(&line).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))
        })
        .collect()
}

/// Runs the evaluation and prints `nDCG@10 x`, `Recall@10 x`, `MRR@10 x`.
/// A BEIR test split: the corpus (ids and `title + " " + text`), the judged queries and their
/// relevance judgements.
pub struct Beir {
    /// Document ids.
    pub doc_ids: Vec<String>,
    /// Document texts.
    pub doc_texts: Vec<String>,
    /// (query id, text) of every judged query.
    pub test: Vec<(String, String)>,
    /// Relevance per query and document.
    pub qrels: HashMap<String, HashMap<String, i64>>,
}

impl Beir {
    /// Loads a BEIR folder. With `corpus_limit`, the corpus is cut to every judged-relevant
    /// document plus the first `corpus_limit` others (a quick, deterministic subset).
    pub fn load(data: &Path, corpus_limit: Option<usize>) -> anyhow::Result<Self> {
        let corpus = read_jsonl(&first_existing(data, &["corpus.jsonl.gz", "corpus.jsonl"])?)?;
        let queries = read_jsonl(&data.join("queries.jsonl"))?;
        let qrels_path = data.join("qrels").join("test.tsv");
        let mut qrels: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for (i, line) in open_text(&qrels_path)?.lines().enumerate() {
            let line = line?;
            let cols: Vec<&str> = line.split('\t').collect();
            if i == 0 && cols.first() == Some(&"query-id") {
                continue;
            }
            let [q, d, s] = cols[..] else { bail!("{}: line {} does not have 3 columns", qrels_path.display(), i + 1) };
            qrels.entry(q.to_string()).or_default().insert(d.to_string(), s.trim().parse().with_context(|| format!("{}: line {}", qrels_path.display(), i + 1))?);
        }
        let str_field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
        let relevant: std::collections::HashSet<&String> = qrels.values().flat_map(|m| m.keys()).collect();
        let mut others = 0;
        let corpus: Vec<&serde_json::Value> = corpus
            .iter()
            .filter(|d| match corpus_limit {
                None => true,
                Some(limit) => {
                    let keep = relevant.contains(&str_field(d, "_id")) || others < limit;
                    others += usize::from(keep && !relevant.contains(&str_field(d, "_id")));
                    keep
                }
            })
            .collect();
        let doc_ids: Vec<String> = corpus.iter().map(|d| str_field(d, "_id")).collect();
        // As MTEB embeds BEIR documents: title, a space, text (truncated by the tokeniser).
        let doc_texts: Vec<String> = corpus.iter().map(|d| format!("{} {}", str_field(d, "title"), str_field(d, "text")).trim().to_string()).collect();
        let test: Vec<(String, String)> = queries
            .iter()
            .map(|q| (str_field(q, "_id"), str_field(q, "text")))
            .filter(|(id, _)| qrels.contains_key(id))
            .collect();
        if test.is_empty() {
            bail!("no query of {} has judgements in {}", data.join("queries.jsonl").display(), qrels_path.display());
        }
        Ok(Self { doc_ids, doc_texts, test, qrels })
    }

    /// Prints nDCG@10, Recall@10 and MRR@10 of one ranking per test query (in order).
    pub fn report(&self, rankings: &[Vec<String>]) {
        let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
        for ((qid, _), ranked) in self.test.iter().zip(rankings) {
            let ranked: Vec<&str> = ranked.iter().take(10).map(String::as_str).collect();
            let (n, r, m) = metrics(&ranked, &self.qrels[qid], 10);
            ndcg += n;
            recall += r;
            mrr += m;
        }
        let n = self.test.len() as f64;
        println!("nDCG@10 {:.5}", ndcg / n);
        println!("Recall@10 {:.5}", recall / n);
        println!("MRR@10 {:.5}", mrr / n);
        println!("queries {}", self.test.len());
        println!("documents {}", self.doc_ids.len());
    }
}

pub fn retrieval(args: RetrievalArgs) -> anyhow::Result<()> {
    let beir = Beir::load(&args.data, args.corpus_limit)?;
    let Beir { doc_ids, doc_texts, test, .. } = &beir;
    if args.model.threads > 0 {
        tch::set_num_threads(args.model.threads as i32);
    }
    let device = memgpt_models::device::parse_device(&args.model.device)?;
    let precision: Precision = args.precision.parse()?;
    let dir = memgpt_models::models_dir(args.model.models_dir.clone()).join(&args.encoder);
    let bert = Bert::load(&dir, device, precision)?;

    let started = Instant::now();
    let doc_vecs = bert.embed(doc_texts, args.batch_size)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("encoded {} documents in {secs:.1} s ({:.1} documents/s, {}, {precision:?})", doc_vecs.len(), doc_vecs.len() as f64 / secs, memgpt_models::device::device_name(device));
    let query_texts: Vec<String> = test.iter().map(|(_, t)| t.clone()).collect();
    let query_vecs = bert.embed(&query_texts, args.batch_size)?;

    let mut rankings = Vec::with_capacity(test.len());
    for q in &query_vecs {
        let mut scored: Vec<(f32, &str)> = doc_vecs
            .iter()
            .zip(doc_ids)
            .map(|(d, id)| (d.iter().zip(q).map(|(a, b)| a * b).sum(), id.as_str()))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        rankings.push(scored.iter().take(10).map(|(_, id)| id.to_string()).collect());
    }
    beir.report(&rankings);
    Ok(())
}
