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

pub fn config(extra: &[&str]) -> GeneratorConfig {
    let mut args = vec!["memgpt-generator".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    GeneratorConfig::parse_from(args)
}

/// Starts a server on its own runtime (it outlives every test of the process) and returns
/// its address; [`client`] waits until it is SERVING.
pub fn spawn(config: GeneratorConfig) -> SocketAddr {
    memgpt_testkit::Running::spawn(move |listener, _stop| async move { memgpt_generator::serve(config, listener, Box::pin(std::future::pending())).await.unwrap() }).detach()
}

/// The shared server with the default configuration.
pub fn shared() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| spawn(config(&[])))
}

/// A client once health reports SERVING (follows the health watch stream).
pub async fn client(addr: SocketAddr) -> GeneratorClient<Channel> {
    let channel = memgpt_testkit::serving(addr, memgpt_generator::SERVICE_NAME).await;
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
