//! `memgpt-memory`: parses the configuration and runs [`memgpt_memory::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    memgpt_memory::run(memgpt_memory::MemoryConfig::parse()).await
}
