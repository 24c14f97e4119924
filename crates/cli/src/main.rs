//! `memgpt`: the project's command: evaluations (`memgpt eval`) and model benchmarks
//! (`memgpt bench`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bench;
mod eval;
mod eval_gateway;
mod stack;

#[derive(Debug, Parser)]
#[command(name = "memgpt", version, about = "MemGPT cluster command")]
struct Cli {
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MEMGPT_LOG", default_value = "warn", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Model throughput benchmarks (one JSON line per run).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Evaluations on public data sets.
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Encoder documents/s on a JSONL corpus.
    Encoder(bench::EncoderBench),
    /// Decoder prefill and decode tokens/s, one or several streams.
    Decoder(bench::DecoderBench),
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Retrieval quality on a BEIR-format data set (corpus.jsonl[.gz], queries.jsonl,
    /// qrels/test.tsv): nDCG@10, Recall@10, MRR@10 of ranking by cosine over the whole corpus.
    Retrieval(eval::RetrievalArgs),
    /// The same through the gateway: Remember the corpus (chunked), Search each query with
    /// group_by_document, score the document rankings.
    GatewayRetrieval(eval_gateway::GatewayRetrievalArgs),
}

/// Options shared by the commands that load models.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Folder of the model files (default: models/ at the repository root).
    #[arg(long, env = "MEMGPT_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Device: auto, cpu or cuda:N.
    #[arg(long, env = "MEMGPT_DEVICE", default_value = "auto")]
    pub device: String,
    /// Intra-op threads (0: all cores).
    #[arg(long, env = "MEMGPT_THREADS", default_value_t = 0)]
    pub threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = memgpt_telemetry::init(&memgpt_telemetry::TelemetryConfig {
        service_name: "memgpt".into(),
        filter: cli.log.clone(),
        format: memgpt_telemetry::LogFormat::Text,
    })?;
    match cli.command {
        Command::Eval { what: EvalCommand::Retrieval(args) } => eval::retrieval(args),
        Command::Eval { what: EvalCommand::GatewayRetrieval(args) } => eval_gateway::gateway_retrieval(args),
        Command::Bench { what: BenchCommand::Encoder(args) } => bench::encoder(args),
        Command::Bench { what: BenchCommand::Decoder(args) } => bench::decoder(args),
    }
}
