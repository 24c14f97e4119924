//! `memgpt-load`: the bounded load generator against a running gateway, or against a cluster
//! it starts itself (the real binaries, two generators); remembers a small corpus first,
//! prints one JSON line with throughput, p50/p99 latency, outcomes by status code and each
//! process's resident memory. See docs/reliability.md.

use std::time::Duration;

use clap::Parser;
use integration_tests::load::{self, LoadSpec};
use memgpt_proto::gateway::v1 as gw;

#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Share of Ask requests (the rest are Search).
    #[arg(long, default_value_t = 0.25)]
    ask_share: f64,
    /// Tokens per answer.
    #[arg(long, default_value_t = 16)]
    max_new_tokens: u32,
    /// A running gateway (host:port); without it a cluster is started.
    #[arg(long)]
    addr: Option<std::net::SocketAddr>,
    /// API key for --addr.
    #[arg(long, env = "MEMGPT_API_KEY")]
    api_key: Option<String>,
}

fn corpus() -> Vec<gw::Document> {
    let topics = ["rivers", "lighthouses", "bakeries", "telescopes", "bridges", "forests", "harbours", "libraries"];
    (0..200)
        .map(|i| {
            let t = topics[i % topics.len()];
            gw::Document { id: format!("d{i}"), text: format!("Note {i} about {t}: item {i} was recorded in year {} near the old {t}.", 1800 + i), metadata: Default::default(), ..Default::default() }
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cluster = match args.addr {
        Some(_) => None,
        None => Some(integration_tests::Cluster::start(integration_tests::Options::default()).await?),
    };
    let addr = args.addr.or(cluster.as_ref().map(|c| c.gateway.addr)).expect("an address");
    let mut client = integration_tests::client(addr, args.api_key.as_deref()).await?;
    client.remember(gw::RememberRequest { namespace: "load".into(), documents: corpus(), warm: false, ..Default::default() }).await?;
    let spec = LoadSpec {
        clients: args.clients,
        duration: Duration::from_secs(args.seconds),
        ask_share: args.ask_share,
        namespace: "load".into(),
        questions: corpus().into_iter().map(|d| format!("What was recorded about {}?", d.text.split(':').next().unwrap_or_default())).collect(),
        max_new_tokens: args.max_new_tokens,
        key: args.api_key.clone(),
    };
    let report = load::run(addr, &spec).await?;
    let mut line = report.json(&spec);
    if let Some(c) = &cluster {
        line["rss_mib"] = serde_json::json!(c.rss_mib().into_iter().collect::<std::collections::BTreeMap<_, _>>());
    }
    println!("{line}");
    Ok(())
}
