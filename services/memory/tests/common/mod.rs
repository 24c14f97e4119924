//! Helpers shared by the memory service's tests: servers on port 0, health waits, records.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use memgpt_memory::MemoryConfig;
use memgpt_proto::memory::v1 as pb;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub const DIM: usize = 8;

/// A server running in this process.
pub struct InProcess {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), memgpt_memory::MemoryError>>>,
}

impl InProcess {
    pub async fn stop(mut self) -> Result<(), memgpt_memory::MemoryError> {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap()
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(memgpt_memory::serve(config, listener, async move {
        let _ = rx.await;
    }));
    InProcess { addr, stop: Some(tx), handle: Some(handle) }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("cannot connect to {addr}: {err}"),
        }
    }
}

/// Waits until health reports SERVING for the overall service (polls health, never a fixed sleep).
pub async fn wait_serving(addr: SocketAddr) -> Channel {
    let channel = channel(addr).await;
    let mut health = HealthClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = health
            .check(HealthCheckRequest { service: String::new() })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
            return channel;
        }
        assert!(Instant::now() < deadline, "{addr} never became SERVING (last: {status:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    }
}
