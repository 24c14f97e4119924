//! `memgpt-gateway`: parses the configuration and runs [`memgpt_gateway::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    memgpt_gateway::run(memgpt_gateway::GatewayConfig::parse()).await
}
