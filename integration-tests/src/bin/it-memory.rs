//! The memory service for the cluster tests: exactly `memgpt-memory`'s entry point.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    memgpt_memory::run(memgpt_memory::MemoryConfig::parse()).await
}
