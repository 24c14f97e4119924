//! `memgpt bench generator`: aggregate tokens/s and time to first token through gRPC at several
//! concurrency levels. Starts a generator in-process on port 0 (or uses `--addr`), sends N
//! concurrent greedy streams of the shared benchmark prompts (scripts/bench/prompts.txt) and
//! prints one JSON line per level and run. Not a test; see docs/benchmarks.md.

use std::time::Instant;

use anyhow::Context;
use memgpt_generator::GeneratorConfig;
use memgpt_proto::generator::v1 as pb;
use pb::generator_client::GeneratorClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// Options of `memgpt bench generator`.
#[derive(Debug, clap::Args)]
pub struct GeneratorBench {
    /// A running generator; without it one is started in-process.
    #[arg(long)]
    addr: Option<String>,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,32")]
    streams: Vec<usize>,
    /// Tokens per stream (streams may end earlier at EOS; only generated tokens count).
    #[arg(long, default_value_t = 64)]
    new_tokens: u32,
    /// Runs per level.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Intra-op threads of the in-process generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Instead of throughput: send this many requests at once to an in-process generator whose
    /// waiting queue holds a tenth of them, and report refusal latency and resident memory.
    #[arg(long)]
    overload: Option<usize>,
    /// Prompt file, one prompt a line.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/bench/prompts.txt"))]
    prompts: std::path::PathBuf,
}

async fn start_in_process(threads: usize, max_batch: u32, max_waiting: usize) -> anyhow::Result<String> {
    let mut config = GeneratorConfig::defaults();
    config.threads = threads;
    config.max_batch = max_batch;
    config.max_waiting = max_waiting;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = memgpt_generator::serve(config, listener, Box::pin(std::future::pending())).await {
            eprintln!("generator failed: {e}");
            std::process::exit(1);
        }
    });
    Ok(format!("http://{addr}"))
}

async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(addr.to_string())?;
    for _ in 0..600 {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel.clone());
            let mut watch = health.watch(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?.into_inner();
            while let Some(r) = watch.message().await? {
                if r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                    return Ok(channel);
                }
            }
        }
        tokio::task::yield_now().await;
    }
    anyhow::bail!("cannot reach {addr}")
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

async fn overload(client: GeneratorClient<Channel>, prompts: &[String], n: usize) -> anyhow::Result<()> {
    let rss_before = resident_mib();
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, prompt) = (client.clone(), prompts[i % prompts.len()].clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let outcome = one_stream(client, prompt, 16).await;
                (outcome, t.elapsed().as_secs_f64() * 1e3)
            })
        })
        .collect();
    let (mut accepted, mut refusals, mut failures) = (0, Vec::new(), 0);
    for t in tasks {
        match t.await? {
            (Ok(_), _) => accepted += 1,
            (Err(e), ms) => match e.downcast_ref::<tonic::Status>() {
                Some(s) if s.code() == tonic::Code::ResourceExhausted => refusals.push(ms),
                _ => failures += 1,
            },
        }
    }
    refusals.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "system": "memgpt-generator-overload",
            "requests": n,
            "accepted": accepted,
            "refused": refusals.len(),
            "failed": failures,
            "refusal_p50_ms": percentile(&refusals, 0.5),
            "refusal_p99_ms": percentile(&refusals, 0.99),
            "seconds": started.elapsed().as_secs_f64(),
            "rss_before_mib": rss_before,
            "rss_after_mib": resident_mib(),
        })
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn one_stream(mut client: GeneratorClient<Channel>, prompt: String, new_tokens: u32) -> anyhow::Result<(u32, f64)> {
    let started = Instant::now();
    let req = pb::GenerateRequest {
        prompt,
        params: Some(pb::SamplingParams { max_new_tokens: Some(new_tokens), temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    };
    let mut stream = client.generate(req).await?.into_inner();
    let mut first = None;
    while let Some(msg) = stream.message().await? {
        first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
        if let Some(last) = msg.r#final {
            return Ok((last.usage.map(|u| u.completion_tokens).unwrap_or(0), first.unwrap_or(last.ttft_ms)));
        }
    }
    anyhow::bail!("stream ended without a final message")
}

/// Runs `memgpt bench generator`.
pub fn generator(args: GeneratorBench) -> anyhow::Result<()> {
    crate::commands::runtime()?.block_on(run(args))
}

async fn run(args: GeneratorBench) -> anyhow::Result<()> {
    let prompts: Vec<String> = std::fs::read_to_string(&args.prompts)
        .with_context(|| format!("cannot read {}", args.prompts.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    anyhow::ensure!(!prompts.is_empty(), "{} holds no prompts", args.prompts.display());
    let addr = match &args.addr {
        Some(a) => a.clone(),
        None => match args.overload {
            Some(n) => start_in_process(args.threads, 4, (n / 10).max(1)).await?,
            None => start_in_process(args.threads, 32, 256).await?,
        },
    };
    let client = GeneratorClient::new(connect(&addr).await?);
    // Warm-up: one short stream.
    one_stream(client.clone(), prompts[0].clone(), 4).await?;
    if let Some(n) = args.overload {
        return overload(client, &prompts, n).await;
    }
    for &n in &args.streams {
        for _ in 0..args.runs {
            let started = Instant::now();
            let tasks: Vec<_> =
                (0..n).map(|i| tokio::spawn(one_stream(client.clone(), prompts[i % prompts.len()].clone(), args.new_tokens))).collect();
            let mut tokens = 0u64;
            let mut ttfts = Vec::with_capacity(n);
            for t in tasks {
                let (generated, ttft) = t.await??;
                tokens += generated as u64;
                ttfts.push(ttft);
            }
            let secs = started.elapsed().as_secs_f64();
            ttfts.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({
                    "system": "memgpt-generator",
                    "streams": n,
                    "completion_tokens": tokens,
                    "seconds": secs,
                    "aggregate_tokens_per_s": tokens as f64 / secs,
                    "ttft_p50_ms": percentile(&ttfts, 0.5),
                    "ttft_p95_ms": percentile(&ttfts, 0.95),
                    "threads": args.threads,
                })
            );
        }
    }
    Ok(())
}
