//! `memgpt`: the project's command: the all-in-one server (`serve`), client commands against
//! any gateway (`ask`, `remember`, `forget`, `search`, `chat`, `info`), batch question
//! answering (`batch`), evaluations (`eval`) and model benchmarks (`bench`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod batch;
mod bench;
mod bench_attend;
mod bench_generator;
mod bench_store;
mod client;
mod commands;
mod eval;
mod eval_attend;
mod eval_gateway;
mod eval_graph;
mod eval_qa;
mod graph;
mod passes;
mod remember;
mod serve;
mod squad;

#[derive(Debug, Parser)]
#[command(name = "memgpt", version, about = "MemGPT cluster command")]
struct Cli {
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MEMGPT_LOG", default_value = "warn,qdrant_edge=error", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Gateway, memory and generator in this process, on one address (the embedded default).
    Serve(serve::ServeArgs),
    /// Ask a question: the answer streams, then its citations.
    Ask {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: commands::AskArgs,
    },
    /// Remember files, folders, JSONL documents or standard input.
    Remember {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: remember::RememberArgs,
    },
    /// Forget documents by id or by metadata.
    Forget {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: commands::ForgetArgs,
    },
    /// Search memories without generating.
    Search {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: commands::SearchArgs,
    },
    /// Interactive chat with recall of earlier turns.
    Chat {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: commands::ChatArgs,
    },
    /// The facts around an entity of the knowledge graph, hop by hop.
    Graph {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: graph::GraphArgs,
    },
    /// What the gateway serves: backends, their health, the model.
    Info {
        #[command(flatten)]
        client: client::ClientArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Answer a JSONL file of questions (resumable, shardable); `batch merge` joins shards.
    #[command(args_conflicts_with_subcommands = true)]
    Batch {
        #[command(subcommand)]
        merge: Option<BatchCommand>,
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: Option<batch::BatchArgs>,
    },
    /// Benchmarks: models, the generator through gRPC, the vector store (not tests).
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
enum BatchCommand {
    /// Join the outputs of several shards into one file, one record per id.
    Merge(batch::output::MergeArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Encoder documents/s on a JSONL corpus.
    Encoder(bench::EncoderBench),
    /// Decoder prefill and decode tokens/s, one or several streams.
    Decoder(bench::DecoderBench),
    /// Time to first token and latency, concat against fused with a warm memory-KV cache.
    Attend(bench_attend::AttendBench),
    /// Generator tokens/s and time to first token through gRPC at several concurrency levels.
    Generator(bench_generator::GeneratorBench),
    /// The edge store: upsert rate, index build, Search latency and recall@10 against an exact
    /// scan, in-process and through gRPC per retrieval mode; beside a Qdrant server with
    /// --qdrant-url.
    Store(bench_store::StoreBench),
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Retrieval quality on a BEIR-format data set (corpus.jsonl[.gz], queries.jsonl,
    /// qrels/test.tsv): nDCG@10, Recall@10, MRR@10 of ranking by cosine over the whole corpus.
    Retrieval(eval::RetrievalArgs),
    /// The same through the gateway: Remember the corpus (chunked), Search each query with
    /// group_by_document, score the document rankings.
    GatewayRetrieval(eval_gateway::GatewayRetrievalArgs),
    /// Question answering on a SQuAD-format file: EM, F1 and retrieval hit rate per attend
    /// mode, through a gateway (in-process when no --addr is given).
    Qa(eval_qa::QaArgs),
    /// The fused attend mode against concat on a SQuAD-format file: each question with its
    /// own paragraph and 4 of other articles; EM, F1, identical answers, time to first token.
    Attend(eval_attend::AttendArgs),
    /// Multi-hop recall on generated chains of random identifiers: accuracy per depth, attend
    /// mode and max_hops (1, and the deepest depth), through a gateway (in-process when no
    /// --addr is given).
    Graph(eval_graph::GraphArgs),
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
        Command::Serve(args) => serve::serve(args),
        Command::Ask { client, args } => commands::ask(client, args),
        Command::Remember { client, args } => remember::remember(client, args),
        Command::Forget { client, args } => commands::forget(client, args),
        Command::Search { client, args } => commands::search(client, args),
        Command::Chat { client, args } => commands::chat(client, args),
        Command::Graph { client, args } => graph::graph(client, args),
        Command::Info { client, json } => commands::info(client, json),
        Command::Batch { merge: Some(BatchCommand::Merge(args)), .. } => batch::output::merge(args),
        Command::Batch { merge: None, client, args: Some(args) } => batch::batch(client, args),
        Command::Batch { .. } => anyhow::bail!("memgpt batch needs --input and --output (or the `merge` subcommand)"),
        Command::Eval { what: EvalCommand::Qa(args) } => eval_qa::qa(args),
        Command::Eval { what: EvalCommand::Graph(args) } => eval_graph::graph(args),
        Command::Eval { what: EvalCommand::Attend(args) } => eval_attend::attend(args),
        Command::Eval { what: EvalCommand::Retrieval(args) } => eval::retrieval(args),
        Command::Eval { what: EvalCommand::GatewayRetrieval(args) } => eval_gateway::gateway_retrieval(args),
        Command::Bench { what: BenchCommand::Encoder(args) } => bench::encoder(args),
        Command::Bench { what: BenchCommand::Decoder(args) } => bench::decoder(args),
        Command::Bench { what: BenchCommand::Attend(args) } => bench_attend::attend(args),
        Command::Bench { what: BenchCommand::Generator(args) } => bench_generator::generator(args),
        Command::Bench { what: BenchCommand::Store(args) } => bench_store::store(args),
    }
}
