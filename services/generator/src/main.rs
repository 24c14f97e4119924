//! `memgpt-generator`: parses the configuration and runs [`memgpt_generator::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    memgpt_generator::run(memgpt_generator::GeneratorConfig::parse()).await
}
