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
