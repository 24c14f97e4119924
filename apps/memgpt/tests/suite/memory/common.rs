//! Helpers shared by the memory service's tests: servers on port 0, health waits, records.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use memgpt_memory::MemoryConfig;
use memgpt_proto::memory::v1 as pb;
use tonic::transport::Channel;

pub const DIM: usize = 8;

/// A server running in this process, on its own runtime thread.
pub struct InProcess(memgpt_testkit::Running<Result<(), memgpt_memory::MemoryError>>);

impl std::ops::Deref for InProcess {
    type Target = memgpt_testkit::Running<Result<(), memgpt_memory::MemoryError>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl InProcess {
    /// Stops the server (drain, flush) and returns what `serve` returned.
    pub async fn stop(self) -> Result<(), memgpt_memory::MemoryError> {
        self.0.stopped().await
    }
}

pub fn config(data_dir: &Path, extra: &[&str]) -> MemoryConfig {
    let mut args = vec![
        "memgpt-memory".to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--dimension".into(),
        DIM.to_string(),
        "--optimize-delay-ms".into(),
        "50".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    MemoryConfig::parse_from(args)
}

pub async fn start(config: MemoryConfig) -> InProcess {
    InProcess(memgpt_testkit::Running::spawn(move |listener, stop| memgpt_memory::serve(config, listener, stop)))
}

/// A channel to `addr` (connected, health not asked).
pub async fn channel(addr: SocketAddr) -> Channel {
    memgpt_testkit::connect(&memgpt_testkit::endpoint(addr), Instant::now() + Duration::from_secs(60)).await
}

/// A channel once health reports the overall service SERVING.
pub async fn wait_serving(addr: SocketAddr) -> Channel {
    memgpt_testkit::serving(addr, "").await
}

pub fn client(channel: Channel) -> pb::memory_client::MemoryClient<Channel> {
    pb::memory_client::MemoryClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
}

/// A deterministic unit-ish vector for `seed`.
pub fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 2000) as f32 / 1000.0) - 1.0 + 1e-3
        })
        .collect()
}

pub fn record(id: &str, seed: u64, text: &str, meta: &[(&str, &str)]) -> pb::Record {
    pb::Record {
        id: id.into(),
        vector: vector(seed),
        text: text.into(),
        metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

/// Where a test's records live: the edge store always; the qdrant store on one Qdrant server
/// when `QDRANT_URL` names its gRPC port, and on a cluster when `QDRANT_CLUSTER_URLS` names
/// several nodes' (comma-separated), each test in a fresh collection it deletes at the end.
pub struct Store {
    /// `edge`, `qdrant` or `qdrant-cluster`.
    pub name: &'static str,
    /// The flags that select it.
    pub flags: Vec<String>,
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Store {
    /// Deletes the test's collection (the qdrant store never deletes one itself).
    pub async fn drop_collection(&self) {
        let value = |name: &str| self.flags.iter().position(|f| f == name).map(|i| self.flags[i + 1].clone());
        if let (Some(urls), Some(collection)) = (value("--qdrant-url"), value("--qdrant-collection")) {
            let url = urls.split(',').next().unwrap_or_default();
            let client = qdrant_client::Qdrant::from_url(url).skip_compatibility_check().build().unwrap();
            client.delete_collection(collection).await.unwrap();
        }
    }
}

fn qdrant_flags(urls: &str, test: &str, shards: u32, replicas: u32) -> Vec<String> {
    let collection = format!("memgpt-test-{test}-{}", uuid::Uuid::new_v4().simple());
    let (shards, replicas) = (shards.to_string(), replicas.to_string());
    let flags = ["--store", "qdrant", "--qdrant-url", urls, "--qdrant-collection", &collection, "--qdrant-shard-number", &shards];
    let mut flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    // On a cluster a write is acknowledged by both replicas of its shard.
    flags.extend(["--qdrant-replication-factor", &replicas, "--qdrant-write-consistency-factor", &replicas].map(String::from));
    flags
}

/// The stores to run `test` on. `one_shard`: one shard each (BM25's document frequencies are
/// counted per shard, so a handful of records spread over several would weigh the same word
/// differently in each).
pub fn stores(test: &str, one_shard: bool) -> Vec<Store> {
    let shards = |n: u32| if one_shard { 1 } else { n };
    let mut stores = vec![Store { name: "edge", flags: vec!["--shards".into(), shards(4).to_string()] }];
    match std::env::var("QDRANT_URL") {
        Ok(url) if !url.is_empty() => stores.push(Store { name: "qdrant", flags: qdrant_flags(&url, test, 1, 1) }),
        _ => eprintln!("{test}: the qdrant store on one node is skipped: set QDRANT_URL to a Qdrant server's gRPC URL (http://127.0.0.1:6334)"),
    }
    match std::env::var("QDRANT_CLUSTER_URLS") {
        Ok(urls) if urls.contains(',') => stores.push(Store { name: "qdrant-cluster", flags: qdrant_flags(&urls, test, shards(3), 2) }),
        _ => eprintln!("{test}: the qdrant store on a cluster is skipped: set QDRANT_CLUSTER_URLS to its nodes' gRPC URLs, comma-separated"),
    }
    stores
}

/// `config` with a store's flags and `extra`.
pub fn store_config(data_dir: &Path, store: &Store, extra: &[&str]) -> MemoryConfig {
    let mut all: Vec<&str> = store.flags.iter().map(String::as_str).collect();
    all.extend(extra);
    config(data_dir, &all)
}
