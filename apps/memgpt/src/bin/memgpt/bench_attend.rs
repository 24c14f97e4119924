//! `memgpt bench attend`: time to first token and end-to-end latency of `concat` against
//! `fused` with a warm memory-KV cache, at several memory counts and stream counts, run side
//! by side on one generator (alternating modes, median of the runs). Memories are SQuAD
//! paragraphs cut to about `--memory-words` words (about 128 tokens at the default); each
//! request takes its own pseudo-random pick and order of them, so the prefix cache serves the
//! system prompt only, in both modes.

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use memgpt_proto::generator::v1 as gen;

use crate::client::{describe, ClientArgs, Generator};
use crate::eval_attend::median;
use crate::passes::{FusedPasses, Pass};
use crate::squad::{stable_hash, Squad};

/// Options of `memgpt bench attend`.
#[derive(Debug, clap::Args)]
pub struct AttendBench {
    /// SQuAD v1.1 JSON file (.json or .json.gz): paragraphs become memories, questions prompts.
    #[arg(long)]
    data: PathBuf,
    /// A generator, or `memgpt serve`; without it the services run in-process.
    #[arg(long)]
    addr: Option<String>,
    /// API key for --addr.
    #[arg(long, env = "MEMGPT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Memory counts per request.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    memories: Vec<usize>,
    /// Concurrent streams.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    streams: Vec<usize>,
    /// Requests per run with one stream (with more, one request per stream).
    #[arg(long, default_value_t = 4)]
    requests: usize,
    /// Runs of each mode (alternating); medians over runs are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Words kept of each paragraph.
    #[arg(long, default_value_t = 96)]
    memory_words: usize,
    /// Fused passes (each against the same concat runs).
    #[command(flatten)]
    fused: FusedPasses,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 16)]
    max_new_tokens: u32,
    #[command(flatten)]
    model: crate::ModelArgs,
}

/// Paragraphs in the memory pool (all warmed before the fused runs).
const POOL: usize = 64;

struct Sample {
    ttft_ms: f64,
    e2e_ms: f64,
    prompt_tokens: u32,
}

async fn one(mut client: Generator, question: String, memories: Vec<gen::Memory>, pass: Pass, max_new: u32) -> Result<Sample, tonic::Status> {
    let started = Instant::now();
    let messages = vec![gen::Message { role: "user".into(), content: question }];
    let req = pass.request(messages, memories, gen::SamplingParams { max_new_tokens: Some(max_new), temperature: Some(0.0), ..Default::default() });
    let mut stream = client.generate(req).await?.into_inner();
    let mut first = None;
    while let Some(msg) = stream.message().await? {
        first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
        if let Some(last) = msg.r#final {
            let ttft_ms = first.unwrap_or(last.ttft_ms);
            let prompt_tokens = last.usage.map(|u| u.prompt_tokens).unwrap_or(0);
            return Ok(Sample { ttft_ms, e2e_ms: started.elapsed().as_secs_f64() * 1e3, prompt_tokens });
        }
    }
    Err(tonic::Status::unavailable("the stream ended without a final message"))
}

pub fn attend(args: AttendBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0 && args.requests > 0, "--runs and --requests must be at least 1");
    anyhow::ensure!(args.memories.iter().all(|&n| (1..=32).contains(&n)), "--memories: each count must be 1 to 32");
    anyhow::ensure!(args.streams.iter().all(|&n| n >= 1), "--streams: each count must be at least 1");
    args.fused.passes()?;
    let squad = Squad::load(&args.data)?;
    let pool: Vec<gen::Memory> = squad
        .passages
        .iter()
        .take(POOL)
        .map(|p| gen::Memory { id: p.id.clone(), text: p.text.split_whitespace().take(args.memory_words).collect::<Vec<_>>().join(" ") })
        .collect();
    anyhow::ensure!(pool.len() >= 32, "{} holds fewer than 32 paragraphs", args.data.display());
    let questions: Vec<String> = squad.questions.iter().map(|q| q.question.clone()).collect();
    crate::serve::against(args.addr.as_deref(), &args.model, |_| {}, |addr| async {
        let client = ClientArgs { addr, api_key: args.api_key.clone(), ca_cert: None };
        run(&args, &pool, &questions, &client).await
    })
}

async fn run(args: &AttendBench, pool: &[gen::Memory], questions: &[String], client: &ClientArgs) -> anyhow::Result<()> {
    let generator = client.connect_generator().await?;
    let warm = generator.clone().warm_memories(gen::WarmMemoriesRequest { memories: pool.to_vec(), system: String::new() }).await.map_err(|s| anyhow::anyhow!("warm: {}", describe(&s)))?.into_inner();
    anyhow::ensure!(warm.cached as usize == pool.len(), "only {} of {} memories fit the memory-KV cache; raise its budget", warm.cached, pool.len());
    eprintln!("warmed {} memories ({} MiB)", warm.cached, warm.bytes >> 20);
    let passes = args.fused.passes()?;
    // Warm-up: one request per pass.
    for &pass in &passes {
        one(generator.clone(), questions[0].clone(), pool[..4].to_vec(), pass, 4).await.map_err(|s| anyhow::anyhow!("warm-up: {}", describe(&s)))?;
    }
    println!("{:>8} {:>7} {:>10} {:>13} {:>13} {:>8} {:>13} {:>13} {:>8} {:>14}", "memories", "streams", "fused", "ttft concat", "ttft fused", "ratio", "e2e concat", "e2e fused", "ratio", "prefill saved");
    let mut serial = 0u64;
    for &n in &args.memories {
        for &streams in &args.streams {
            let count = if streams == 1 { args.requests } else { streams };
            let mut ttft = vec![Vec::new(); passes.len()];
            let mut e2e = vec![Vec::new(); passes.len()];
            let mut tokens = vec![0u64; passes.len()];
            let mut reused = vec![0u64; passes.len()];
            for _ in 0..args.runs {
                for (m, &pass) in passes.iter().enumerate() {
                    let before = generator.clone().info(gen::InfoRequest {}).await?.into_inner().memory_tokens_reused;
                    let reqs: Vec<_> = (0..count)
                        .map(|_| {
                            serial += 1;
                            let mut picked: Vec<usize> = (0..pool.len()).collect();
                            picked.sort_by_key(|i| stable_hash(&format!("{serial}|{i}")));
                            let memories = picked[..n].iter().map(|&i| pool[i].clone()).collect();
                            let question = questions[serial as usize % questions.len()].clone();
                            one(generator.clone(), question, memories, pass, args.max_new_tokens)
                        })
                        .collect();
                    let samples: Vec<_> = futures::stream::iter(reqs).buffer_unordered(streams).collect().await;
                    let samples = samples.into_iter().collect::<Result<Vec<_>, _>>().map_err(|s| anyhow::anyhow!("{}: {}", pass.name(), describe(&s)))?;
                    reused[m] += generator.clone().info(gen::InfoRequest {}).await?.into_inner().memory_tokens_reused - before;
                    ttft[m].push(median(samples.iter().map(|s| s.ttft_ms).collect()));
                    e2e[m].push(median(samples.iter().map(|s| s.e2e_ms).collect()));
                    tokens[m] += samples.iter().map(|s| u64::from(s.prompt_tokens)).sum::<u64>();
                }
            }
            let (tc, ec) = (median(ttft[0].clone()), median(e2e[0].clone()));
            for (m, &pass) in passes.iter().enumerate().skip(1) {
                let (tf, ef) = (median(ttft[m].clone()), median(e2e[m].clone()));
                let saved = reused[m] as f64 / tokens[m].max(1) as f64;
                let fused = pass.name();
                println!("{n:>8} {streams:>7} {fused:>10} {tc:>10.1} ms {tf:>10.1} ms {:>7.2}x {ec:>10.1} ms {ef:>10.1} ms {:>7.2}x {:>13.1}%", tc / tf, ec / ef, saved * 100.0);
                let line = serde_json::json!({
                    "memories": n, "streams": streams, "fused": fused, "runs": args.runs, "requests_per_run": count,
                    "ttft_ms": {"concat": tc, "fused": tf}, "e2e_ms": {"concat": ec, "fused": ef},
                    "ttft_speedup": tc / tf, "prompt_tokens_mean": tokens[0] as f64 / (count * args.runs) as f64,
                    "prefill_tokens_saved_share": saved,
                });
                eprintln!("{line}");
            }
        }
    }
    Ok(())
}
