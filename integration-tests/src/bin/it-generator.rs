//! The generator service for the cluster tests: exactly `memgpt-generator`'s entry point.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    memgpt_generator::run(memgpt_generator::GeneratorConfig::parse()).await
}
