//! `memgpt bench store`: benchmark of the edge store (not a test): batch upsert rate, index build time, Search
//! latency and recall@10 against an exact brute-force scan, in-process and through gRPC, and
//! Search through gRPC in each retrieval mode (dense, sparse, hybrid), interleaved; with
//! `--qdrant-url`, the same data in a Qdrant server behind a second memory service (the
//! qdrant store), its dense Search timed through the same client, alternating with edge's.
//!
//! The data is embedding-like: a 16-dimensional Gaussian latent through one fixed random
//! projection to 384 dimensions, plus a little noise, L2-normalised. Real sentence embeddings
//! have a low intrinsic dimension; uniformly random vectors would defeat every ANN index.
//! Texts (for BM25) are 60 words drawn from a Zipf-distributed vocabulary of 30,000 words, as
//! word frequencies in text are; queries are 6 such words.
//!
//!     cargo run --release -p memgpt -- bench store --records 100000

use std::time::{Duration, Instant};

use anyhow::Context;
use memgpt_memory::store::edge::{EdgeStore, EdgeStoreConfig};
use memgpt_memory::store::{Record, Retrieval, SearchQuery, VectorStore};
use memgpt_proto::memory::v1 as pb;
use rand::{Rng, SeedableRng};
use rand_distr::{StandardNormal, Zipf};

/// Options of `memgpt bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreBench {
    /// Records to insert.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 384)]
    dimension: usize,
    /// Latent dimension of the generated data.
    #[arg(long, default_value_t = 16)]
    latent: usize,
    /// Records per Upsert.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Search queries timed.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Edge shards (the memory service's default for a new directory).
    #[arg(long, default_value_t = memgpt_memory::store::edge::DEFAULT_SHARDS)]
    shards: usize,
    /// HNSW ef at search time.
    #[arg(long, default_value_t = 32)]
    hnsw_ef: usize,
    /// Optimizer's target segments per shard.
    #[arg(long, default_value_t = 1)]
    segments: usize,
    /// Only time this many searches right after the index build (for profilers), then exit.
    #[arg(long)]
    search_only: Option<usize>,
    /// Data directory (a fresh temporary one when unset).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// A Qdrant server's gRPC URL: compare its Search with edge's (a fresh collection,
    /// deleted at the end).
    #[arg(long)]
    qdrant_url: Option<String>,
    /// Shards of that collection.
    #[arg(long, default_value_t = 2)]
    qdrant_shards: u32,
}

struct Data {
    projection: Vec<Vec<f32>>,
    noise: f32,
    words: Zipf<f64>,
}

impl Data {
    fn new(latent: usize, dimension: usize, rng: &mut impl Rng) -> Self {
        let projection = (0..latent)
            .map(|_| (0..dimension).map(|_| rng.sample::<f32, _>(StandardNormal)).collect())
            .collect();
        Self { projection, noise: 0.1, words: Zipf::new(30_000, 1.0).expect("a valid Zipf law") }
    }

    /// `n` words of the vocabulary (each word spelt in letters, so it is one token).
    fn text(&self, n: usize, rng: &mut impl Rng) -> String {
        let word = |mut i: u64| {
            let mut w = String::new();
            while i > 0 {
                w.push((b'a' + (i % 26) as u8) as char);
                i /= 26;
            }
            w + "x"
        };
        // The 100 most frequent words stand for the stop words a tokeniser drops.
        let mut words = Vec::with_capacity(n);
        while words.len() < n {
            let rank = rng.sample(self.words) as u64;
            if rank > 100 {
                words.push(word(rank));
            }
        }
        words.join(" ")
    }

    fn vector(&self, rng: &mut impl Rng) -> Vec<f32> {
        let dimension = self.projection[0].len();
        let mut v: Vec<f32> = (0..dimension).map(|_| self.noise * rng.sample::<f32, _>(StandardNormal)).collect();
        for row in &self.projection {
            let z: f32 = rng.sample(StandardNormal);
            for (x, p) in v.iter_mut().zip(row) {
                *x += z * p / (self.projection.len() as f32).sqrt();
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

fn brute_force(all: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> =
        all.iter().enumerate().map(|(i, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum(), i)).collect();
    scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!("{name}: p50 {:.3} ms, p99 {:.3} ms", percentile(&times, 0.5), percentile(&times, 0.99));
}

/// Runs `memgpt bench store`.
pub fn store(args: StoreBench) -> anyhow::Result<()> {
    crate::commands::runtime()?.block_on(run(args))
}

async fn run(args: StoreBench) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().join("store"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data = Data::new(args.latent, args.dimension, &mut rng);
    let vectors: Vec<Vec<f32>> = (0..args.records).map(|_| data.vector(&mut rng)).collect();
    let queries: Vec<Vec<f32>> = (0..args.queries).map(|_| data.vector(&mut rng)).collect();
    let texts: Vec<String> = (0..args.records).map(|_| data.text(60, &mut rng)).collect();
    let query_texts: Vec<String> = (0..args.queries).map(|_| data.text(6, &mut rng)).collect();
    let config = EdgeStoreConfig {
        data_dir: dir.clone(),
        shards: Some(args.shards),
        dimension: args.dimension,
        max_inflight_writes: 64,
        hnsw_ef: args.hnsw_ef,
        optimize_delay: Duration::from_secs(3600),
        segments_per_shard: args.segments,
    };
    println!("records {}, dimension {}, batch {}, shards {}, segments/shard {}, hnsw_ef {}", args.records, args.dimension, args.batch, args.shards, args.segments, args.hnsw_ef);

    let store = EdgeStore::open(config.clone()).context("open store")?;
    let started = Instant::now();
    for (b, chunk) in vectors.chunks(args.batch).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                id: format!("r{}", b * args.batch + i),
                vector: v.clone(),
                text: texts[b * args.batch + i].clone(),
                metadata: Default::default(),
                validity: Default::default(),
            })
            .collect();
        store.upsert("bench", records).await?;
    }
    let upsert_secs = started.elapsed().as_secs_f64();
    println!("upsert: {:.0} records/s ({upsert_secs:.1} s)", args.records as f64 / upsert_secs);

    let started = Instant::now();
    tokio::task::block_in_place(|| store.optimize_now())?;
    let (points, indexed) = store.index_status();
    // Each point has two vectors, the dense one (HNSW) and its BM25 one (an inverted index).
    println!("index build: {:.1} s ({indexed} vectors of {points} points in indexed segments)", started.elapsed().as_secs_f64());

    let k = 10;
    if let Some(n) = args.search_only {
        let mut times = Vec::with_capacity(n);
        for q in queries.iter().cycle().take(n) {
            let t = Instant::now();
            store.search(dense(q, k)).await?;
            times.push(t.elapsed());
        }
        report("search in-process (edge store)", times);
        return Ok(());
    }
    let mut hits_total = 0usize;
    let mut times = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let hits = store
            .search(dense(q, k))
            .await?;
        times.push(t.elapsed());
        let exact = brute_force(&vectors, q, k);
        let exact: std::collections::HashSet<String> = exact.into_iter().map(|i| format!("r{i}")).collect();
        hits_total += hits.iter().filter(|h| exact.contains(&h.id)).count();
    }
    println!("recall@10: {:.4}", hits_total as f64 / (k * queries.len()) as f64);
    report("search in-process (edge store)", times);

    let mut times = Vec::with_capacity(queries.len());
    for q in queries.iter().take(200) {
        let t = Instant::now();
        std::hint::black_box(brute_force(&vectors, q, k));
        times.push(t.elapsed());
    }
    report("search brute force (exact scan, 1 thread)", times);
    drop(store);

    // Reopened from disk: the index must have been persisted.
    let store = EdgeStore::open(config.clone()).context("reopen store")?;
    let (points, indexed) = store.index_status();
    let mut times = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        store.search(dense(q, k)).await?;
        times.push(t.elapsed());
    }
    report(&format!("search in-process after reopening ({indexed} vectors of {points} points indexed)"), times);
    drop(store);

    // The same store served over gRPC on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut server_config = <memgpt_memory::MemoryConfig as clap::Parser>::parse_from(["memgpt-memory"]);
    server_config.data_dir = dir;
    server_config.shards = Some(args.shards as u32);
    server_config.dimension = args.dimension as u32;
    server_config.hnsw_ef = args.hnsw_ef;
    server_config.segments_per_shard = args.segments;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(memgpt_memory::serve(server_config, listener, Box::pin(async move {
        let _ = stop_rx.await;
    })));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut client = pb::memory_client::MemoryClient::new(channel);
    // Each query in every mode, the modes' order rotating, so the machine's noise falls on all.
    let modes = [pb::RetrievalMode::Dense, pb::RetrievalMode::Sparse, pb::RetrievalMode::Hybrid];
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(queries.len()); modes.len()];
    for (n, (q, text)) in queries.iter().zip(&query_texts).enumerate() {
        for m in 0..modes.len() {
            let m = (m + n) % modes.len();
            let request = pb::SearchRequest {
                namespace: "bench".into(),
                vector: q.clone(),
                top_k: k as u32,
                query_text: text.clone(),
                retrieval: Some(pb::Retrieval { mode: modes[m] as i32, ..Default::default() }),
                ..Default::default()
            };
            let t = Instant::now();
            match client.search(request).await {
                Ok(_) => times[m].push(t.elapsed()),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => anyhow::bail!("search failed: {status}"),
            }
        }
    }
    let p50 = |t: &mut Vec<Duration>| {
        t.sort();
        percentile(t, 0.5)
    };
    let dense_p50 = p50(&mut times[0]);
    for (mode, t) in modes.iter().zip(times) {
        let name = mode.as_str_name().trim_start_matches("RETRIEVAL_MODE_").to_lowercase();
        let mut t = t;
        let ratio = p50(&mut t) / dense_p50;
        report(&format!("search through gRPC, {name} (tonic client, loopback; p50 {ratio:.2}x dense)"), t);
    }
    if let Some(url) = &args.qdrant_url {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        side_by_side(&args, url, client, &vectors, &texts, &queries).await?;
    }
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

/// The records in a Qdrant collection behind a second memory service; dense Search timed
/// through the same client on both services, alternating, and recall@10 of each.
async fn side_by_side(
    args: &StoreBench,
    url: &str,
    mut edge: pb::memory_client::MemoryClient<tonic::transport::Channel>,
    vectors: &[Vec<f32>],
    texts: &[&str],
    queries: &[Vec<f32>],
) -> anyhow::Result<()> {
    let collection = format!("memgpt-bench-{}", uuid::Uuid::new_v4().simple());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shards = args.qdrant_shards.to_string();
    let flags = ["memgpt-memory", "--store", "qdrant", "--qdrant-url", url, "--qdrant-collection", &collection, "--qdrant-shard-number", &shards];
    let mut config = <memgpt_memory::MemoryConfig as clap::Parser>::parse_from(flags.into_iter().chain(["--qdrant-replication-factor", "1"]));
    config.dimension = args.dimension as u32;
    config.hnsw_ef = args.hnsw_ef;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(memgpt_memory::serve(config, listener, Box::pin(async move {
        let _ = stop_rx.await;
    })));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    while !health.check(tonic_health::pb::HealthCheckRequest::default()).await.is_ok_and(|r| r.into_inner().status == serving) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut qdrant = pb::memory_client::MemoryClient::new(channel).max_encoding_message_size(64 << 20);
    let started = Instant::now();
    for (b, chunk) in vectors.chunks(args.batch).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| pb::Record { id: format!("r{}", b * args.batch + i), vector: v.clone(), text: texts[b * args.batch + i].to_string(), ..Default::default() })
            .collect();
        qdrant.upsert(pb::UpsertRequest { namespace: "bench".into(), records, wait: true }).await?;
    }
    println!("qdrant server: upsert through the memory service {:.1} s", started.elapsed().as_secs_f64());
    // Qdrant indexes in the background: wait until every vector is in the HNSW index.
    let direct = qdrant_client::Qdrant::from_url(url).skip_compatibility_check().build()?;
    let started = Instant::now();
    loop {
        let info = direct.collection_info(&collection).await?.result.context("collection info")?;
        let green = info.status == qdrant_client::qdrant::CollectionStatus::Green as i32;
        if green && info.indexed_vectors_count.unwrap_or(0) >= vectors.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("qdrant server: index build {:.1} s", started.elapsed().as_secs_f64());

    let k = 10;
    // The exact answers first: a scan between two timed searches would leave both with cold
    // caches.
    let exact: Vec<std::collections::HashSet<String>> =
        queries.iter().map(|q| brute_force(vectors, q, k).into_iter().map(|i| format!("r{i}")).collect()).collect();
    let (mut times, mut found) = ([Vec::new(), Vec::new()], [0usize; 2]);
    for (n, (q, exact)) in queries.iter().zip(&exact).enumerate() {
        for j in 0..2 {
            let which = (j + n) % 2;
            let client = if which == 0 { &mut edge } else { &mut qdrant };
            let request = pb::SearchRequest { namespace: "bench".into(), vector: q.clone(), top_k: k as u32, ..Default::default() };
            let t = Instant::now();
            let hits = client.search(request).await?.into_inner().hits;
            times[which].push(t.elapsed());
            found[which] += hits.iter().filter(|h| exact.contains(&h.id)).count();
        }
    }
    let [edge_times, qdrant_times] = times;
    let p50 = |mut t: Vec<Duration>| {
        t.sort();
        percentile(&t, 0.5)
    };
    let ratio = p50(qdrant_times.clone()) / p50(edge_times.clone());
    for (name, t, hits) in [("edge store", edge_times, found[0]), ("qdrant server", qdrant_times, found[1])] {
        println!("side by side, dense through gRPC, {name}: recall@10 {:.4}", hits as f64 / (k * queries.len()) as f64);
        report(&format!("side by side, dense through gRPC, {name}"), t);
    }
    println!("side by side: qdrant server p50 / edge store p50 = {ratio:.2}");
    direct.delete_collection(&collection).await?;
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

/// A dense search of `q`.
fn dense(q: &[f32], k: usize) -> SearchQuery {
    SearchQuery {
        namespaces: vec!["bench".into()],
        vector: q.to_vec(),
        top_k: k,
        filter: None,
        min_score: None,
        text: String::new(),
        retrieval: Retrieval::Dense,
        as_of: 0,
        now: 0,
    }
}
