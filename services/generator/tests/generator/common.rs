//! Helpers shared by the generator's tests: servers on port 0 with the real default model,
//! health waits (watching health, never a fixed sleep), and stream collection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use memgpt_generator::GeneratorConfig;
use memgpt_proto::generator::v1 as pb;
use pb::generator_client::GeneratorClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub fn config(extra: &[&str]) -> GeneratorConfig {
    let mut args = vec!["memgpt-generator".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    GeneratorConfig::parse_from(args)
}

/// Starts a server on its own runtime (it outlives every test of the process) and returns
/// its address once health says SERVING.
pub fn spawn(config: GeneratorConfig) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            memgpt_generator::serve(config, listener, std::future::pending()).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// The shared server with the default configuration.
pub fn shared() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| spawn(config(&[])))
}

pub async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::task::yield_now().await;
            }
            Err(err) => panic!("cannot connect to {addr}: {err}"),
        }
    }
}

/// A client once health reports SERVING (follows the health watch stream).
pub async fn client(addr: SocketAddr) -> GeneratorClient<Channel> {
    let channel = channel(addr).await;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health.watch(HealthCheckRequest { service: memgpt_generator::SERVICE_NAME.into() }).await.unwrap().into_inner();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let next = tokio::time::timeout_at(deadline.into(), watch.message()).await.expect("SERVING within 180 s");
        match next.unwrap() {
            Some(r) if r.status == ServingStatus::Serving as i32 => break,
            Some(_) => continue,
            None => panic!("health stream ended"),
        }
    }
    GeneratorClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
}

pub fn greedy(prompt: &str, max_new: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        params: Some(pb::SamplingParams { max_new_tokens: Some(max_new), temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    }
}

/// A whole stream: the concatenated deltas and the final message.
pub async fn collect(client: &mut GeneratorClient<Channel>, req: pb::GenerateRequest) -> Result<(String, pb::GenerateFinal), tonic::Status> {
    let mut stream = client.generate(req).await?.into_inner();
    let mut text = String::new();
    while let Some(msg) = stream.message().await? {
        text.push_str(&msg.delta);
        if let Some(last) = msg.r#final {
            assert!(stream.message().await?.is_none(), "nothing may follow the final message");
            return Ok((text, last));
        }
    }
    panic!("stream ended without a final message");
}

/// Polls Info until `done` holds (bounded by `within`).
pub async fn info_until(client: &mut GeneratorClient<Channel>, within: Duration, done: impl Fn(&pb::InfoResponse) -> bool) -> pb::InfoResponse {
    let deadline = Instant::now() + within;
    loop {
        let info = client.info(pb::InfoRequest {}).await.unwrap().into_inner();
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "condition not reached within {within:?}: {info:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
