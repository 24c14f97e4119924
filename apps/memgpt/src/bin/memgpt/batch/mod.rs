//! `memgpt batch`: a JSONL file of questions answered through a gateway with bounded
//! concurrency, resumable (a rerun skips ids already in the output), shardable across
//! workers, and never losing a written line: each record is appended whole, one at a time.

pub mod output;
pub mod record;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use memgpt_proto::generator::v1 as gen;
use tokio::sync::{mpsc, Semaphore};

use crate::client::{ClientArgs, Gateway};
use record::{Parsed, Question};

/// Options of `memgpt batch`.
#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Questions, one JSON object a line: `id`, `question`, optional `namespace` (or
    /// `namespaces`), `task` (qa, summarize, translate), `options` (top_k, min_score,
    /// attend_mode, max_new_tokens, max_sentences, style, temperature, top_p, seed).
    #[arg(long)]
    pub input: PathBuf,
    /// Answers, one JSON object a line, each with the input's `id`; appended to when it exists.
    #[arg(long)]
    pub output: PathBuf,
    /// Questions in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Take only this worker's share, INDEX/COUNT (by a stable hash of the id).
    #[arg(long, value_parser = output::parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Ask again the questions whose records in the output are errors.
    #[arg(long)]
    pub retry_failed: bool,
    /// Namespace of lines that name none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Tries per question on retryable errors (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED).
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// Default max_new_tokens of lines that set none.
    #[arg(long)]
    pub max_new_tokens: Option<u32>,
    /// Default temperature of lines that set none (0: greedy).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Default seed of lines that set none.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Counts of one run.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    failed: usize,
    latencies: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn retryable(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::ResourceExhausted | tonic::Code::Aborted)
}

/// Asks one question, retrying retryable errors with backoff (the server's pushback hint when
/// it gives one); the record to write.
async fn answer(mut gateway: Gateway, q: Question, attempts: u32) -> (serde_json::Value, Option<f64>) {
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        match gateway.ask(q.request.clone()).await {
            Ok(resp) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                return (record::ok_record(&q.id, resp.get_ref(), ms), Some(ms));
            }
            Err(status) if retryable(status.code()) && attempt < attempts => {
                let hint = status.metadata().get("grpc-retry-pushback-ms").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                let wait = hint.map(Duration::from_millis).unwrap_or(delay).max(Duration::from_millis(50));
                tracing::debug!(id = %q.id, attempt, code = ?status.code(), wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(8));
                attempt += 1;
            }
            Err(status) => return (record::error_record(&q.id, q.line, &record::code_name(status.code()), status.message()), None),
        }
    }
}

pub fn batch(client: ClientArgs, args: BatchArgs) -> anyhow::Result<()> {
    let defaults = gen::SamplingParams { max_new_tokens: args.max_new_tokens, temperature: args.temperature, seed: args.seed, ..Default::default() };
    let done = output::prepare(&args.output, args.retry_failed)?;
    let input = std::fs::File::open(&args.input).with_context(|| format!("cannot open the input {}", args.input.display()))?;
    let mut jobs = Vec::new();
    let mut seen = HashSet::new();
    let (mut skipped, mut duplicates, mut other_shards) = (0usize, 0usize, 0usize);
    for (i, line) in std::io::BufReader::new(input).split(b'\n').enumerate() {
        let bytes = line.with_context(|| format!("cannot read {}", args.input.display()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => record::parse(text, i + 1, &args.namespace, &defaults),
            Err(e) => Parsed::Bad { id: format!("line:{}", i + 1), line: i + 1, message: format!("the line is not UTF-8: {e}") },
        };
        let id = match &parsed {
            Parsed::Ask(q) => q.id.clone(),
            Parsed::Bad { id, .. } => id.clone(),
        };
        if args.shard.is_some_and(|(index, count)| !output::in_shard(&id, index, count)) {
            other_shards += 1;
        } else if !seen.insert(id.clone()) {
            tracing::warn!(%id, line = i + 1, "duplicate id in the input; only its first line is asked");
            duplicates += 1;
        } else if done.ids.contains(&id) {
            skipped += 1;
        } else {
            jobs.push(parsed);
        }
    }
    eprintln!(
        "{} questions to ask; {skipped} already in {}{}{}",
        jobs.len(),
        args.output.display(),
        if duplicates > 0 { format!("; {duplicates} duplicate ids ignored") } else { String::new() },
        if args.shard.is_some() { format!("; {other_shards} in other shards") } else { String::new() },
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (tally, interrupted, secs) = runtime.block_on(run(&client, &args, jobs))?;
    let mut lat = tally.latencies;
    lat.sort_by(f64::total_cmp);
    let total = tally.answered + tally.failed;
    eprintln!(
        "{}: {} answered, {} failed, {skipped} skipped (done before); {:.2} questions/s; latency p50 {:.0} ms, p95 {:.0} ms; output {}",
        if interrupted { "interrupted" } else { "done" },
        tally.answered,
        tally.failed,
        if secs > 0.0 { total as f64 / secs } else { 0.0 },
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        args.output.display()
    );
    if interrupted {
        std::process::exit(130);
    }
    Ok(())
}

async fn run(client: &ClientArgs, args: &BatchArgs, jobs: Vec<Parsed>) -> anyhow::Result<(Tally, bool, f64)> {
    let gateway = client.connect_lazy()?;
    let mut file = output::open_append(&args.output)?;
    let bar = crate::remember::progress(Some(jobs.len() as u64), "questions");
    let (tx, mut rx) = mpsc::channel::<(serde_json::Value, Option<f64>)>(args.concurrency.max(1) * 2);
    // The writer: one whole line per record, in completion order.
    let writer = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Tally> {
            let mut tally = Tally::default();
            while let Some((record, latency)) = rx.blocking_recv() {
                output::append(&mut file, &record)?;
                match latency {
                    Some(ms) => {
                        tally.answered += 1;
                        tally.latencies.push(ms);
                    }
                    None => tally.failed += 1,
                }
                bar.inc(1);
                bar.set_message(format!("{} failed", tally.failed));
            }
            file.sync_all()?;
            Ok(tally)
        })
    };
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    for job in jobs {
        let question = match job {
            Parsed::Bad { id, line, message } => {
                let _ = tx.send((record::error_record(&id, line, "INVALID_ARGUMENT", &message), None)).await;
                continue;
            }
            Parsed::Ask(q) => q,
        };
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p?,
            _ = &mut interrupt => { interrupted = true; break; }
        };
        let (tx, gateway, attempts) = (tx.clone(), gateway.clone(), args.attempts.max(1));
        tasks.spawn(async move {
            let outcome = answer(gateway, question, attempts).await;
            let _ = tx.send(outcome).await;
            drop(permit);
        });
    }
    drop(tx);
    if !interrupted {
        tokio::select! {
            () = async { while tasks.join_next().await.is_some() {} } => {}
            _ = &mut interrupt => interrupted = true,
        }
    }
    // In-flight questions of an interrupted run are dropped; their ids are asked on the rerun.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let tally = writer.await??;
    bar.finish_and_clear();
    Ok((tally, interrupted, started.elapsed().as_secs_f64()))
}
