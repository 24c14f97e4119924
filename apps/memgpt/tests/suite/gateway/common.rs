//! The three services in this process on port 0 with the real default models, each waited
//! on through its health service.

#![allow(dead_code)]

use std::net::SocketAddr;

use clap::Parser;
use memgpt_proto::gateway::v1::gateway_client::GatewayClient;
use tonic::transport::Channel;

/// A server on its own runtime thread; dropping it stops it and waits until it has (the
/// memory store flushed before its folder goes away).
pub type Running = memgpt_testkit::Running<()>;

pub fn memory(data_dir: &std::path::Path) -> Running {
    memory_with(data_dir, &[])
}

pub fn memory_with(data_dir: &std::path::Path, extra: &[&str]) -> Running {
    let mut args = vec!["memgpt-memory", "--data-dir", data_dir.to_str().unwrap(), "--optimize-delay-ms", "50", "--shutdown-grace-secs", "1"];
    args.extend(extra);
    let config = memgpt_memory::MemoryConfig::parse_from(args);
    Running::spawn(move |l, stop| async move { memgpt_memory::serve(config, l, stop).await.unwrap() })
}

pub fn generator() -> Running {
    generator_with(&[])
}

pub fn generator_with(extra: &[&str]) -> Running {
    let mut args = vec!["memgpt-generator", "--shutdown-grace-secs", "0"];
    args.extend(extra);
    let config = memgpt_generator::GeneratorConfig::parse_from(args);
    Running::spawn(move |l, stop| async move { memgpt_generator::serve(config, l, stop).await.unwrap() })
}

pub fn gateway(memory: &[SocketAddr], generator: &[SocketAddr], extra: &[&str]) -> Running {
    gateway_with("http", memory, generator, extra)
}

pub fn gateway_with(scheme: &str, memory: &[SocketAddr], generator: &[SocketAddr], extra: &[&str]) -> Running {
    let list = |a: &[SocketAddr]| a.iter().map(|a| format!("{scheme}://{a}")).collect::<Vec<_>>().join(",");
    let mut args = vec![
        "memgpt-gateway".to_string(),
        "--memory".into(),
        list(memory),
        "--generator".into(),
        list(generator),
        "--health-interval-ms".into(),
        "200".into(),
        "--shutdown-grace-secs".into(),
        "1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = memgpt_gateway::GatewayConfig::parse_from(args);
    Running::spawn(move |l, stop| async move { memgpt_gateway::serve(config, l, stop).await.unwrap() })
}

pub use memgpt_testkit::{serving, serving_on};

pub async fn gateway_client(addr: SocketAddr) -> GatewayClient<Channel> {
    GatewayClient::new(serving(addr, memgpt_gateway::SERVICE_NAME).await)
}
