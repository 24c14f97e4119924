//! The gateway service for the cluster tests: exactly `memgpt-gateway`'s entry point.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    memgpt_gateway::run(memgpt_gateway::GatewayConfig::parse()).await
}
