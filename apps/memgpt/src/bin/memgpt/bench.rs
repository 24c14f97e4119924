//! `memgpt bench`: model throughput, printed as one JSON line per run so a driver script can
//! compare it with its peers measured in the same run (see docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use memgpt_models::encoder::bert::{Bert, Precision};
use memgpt_models::text::chat::ChatMessage;
use memgpt_models::llama::decoder::Decoder;
use memgpt_models::llama::{Llama, LlamaConfig};
use tch::Kind;

use crate::ModelArgs;

/// Options of `memgpt bench encoder`.
#[derive(Debug, clap::Args)]
pub struct EncoderBench {
    /// JSONL file of texts (`text` field; `title` is prefixed when present), gz allowed.
    #[arg(long)]
    input: PathBuf,
    /// Texts to encode (from the start of the file).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// f32 or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
    /// Measurements (one JSON line each), after one warm-up batch.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    #[command(flatten)]
    model: ModelArgs,
}

/// Options of `memgpt bench decoder`.
#[derive(Debug, clap::Args)]
pub struct DecoderBench {
    /// Sequences decoded together; a comma-separated list runs each in turn.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Measurements per stream count (one JSON line each), after one warm-up.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Tokens generated per stream.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Model file or folder under the models directory.
    #[arg(long, default_value = memgpt_models::DEFAULT_DECODER)]
    decoder: String,
    /// Random weights of a named real shape instead of a model file (tiny, smollm2-135m,
    /// llama3-8b): speed on a machine without the weights, or of a size never downloaded.
    #[arg(long, conflicts_with = "decoder")]
    shape: Option<String>,
    /// Prompt length in tokens for `--shape` (a fixed synthetic prompt; the real-model run
    /// uses the chat-rendered PROMPT).
    #[arg(long, default_value_t = 128, requires = "shape")]
    prompt_tokens: usize,
    /// Products of at most this many rows read the GGUF's Q4_0/Q4_1/Q8_0 blocks instead of
    /// the dequantised f32 weights (CPU only; 0: never).
    #[arg(long, default_value_t = memgpt_models::llama::DEFAULT_BLOCK_ROWS)]
    block_rows: usize,
    #[command(flatten)]
    model: ModelArgs,
}

/// The fixed prompt of the decoder benchmark (the peers use the same rendered text).
pub const PROMPT: &str = "Write a long story about a lighthouse keeper who discovers a map in a bottle, with many details about the sea, the weather and the village nearby.";

pub fn encoder(args: EncoderBench) -> anyhow::Result<()> {
    if args.model.threads > 0 {
        tch::set_num_threads(args.model.threads as i32);
    }
    let docs = crate::eval::read_jsonl(&args.input)?;
    let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
    let texts: Vec<String> = docs.iter().take(args.limit).map(|d| format!("{} {}", field(d, "title"), field(d, "text")).trim().to_string()).collect();
    let precision: Precision = args.precision.parse()?;
    let device = memgpt_models::device::parse_device(&args.model.device)?;
    let dir = memgpt_models::models_dir(args.model.models_dir.clone()).join(memgpt_models::DEFAULT_ENCODER);
    let bert = Bert::load(&dir, device, precision)?;
    bert.embed(&texts[..texts.len().min(args.batch_size)], args.batch_size)?;
    for _ in 0..args.repeat {
        let started = Instant::now();
        let out = bert.embed(&texts, args.batch_size)?;
        let secs = started.elapsed().as_secs_f64();
        println!("{}", serde_json::json!({"system": format!("memgpt-{}", args.precision), "device": memgpt_models::device::device_name(device), "documents": out.len(), "batch_size": args.batch_size, "seconds": secs, "documents_per_s": out.len() as f64 / secs, "threads": tch::get_num_threads()}));
    }
    Ok(())
}

pub fn decoder(args: DecoderBench) -> anyhow::Result<()> {
    if args.model.threads > 0 {
        tch::set_num_threads(args.model.threads as i32);
    }
    let device = memgpt_models::device::parse_device(&args.model.device)?;
    let kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    let (mut model, prompt, name) = match &args.shape {
        Some(shape) => {
            let config = LlamaConfig::preset(shape)?;
            let prompt = config.synthetic_prompt(args.prompt_tokens);
            (Llama::random(config, device, kind, 0), prompt, format!("random {shape}"))
        }
        None => {
            let path = memgpt_models::models_dir(args.model.models_dir.clone()).join(&args.decoder);
            let decoder = Decoder::load(&path, device, kind).with_context(|| format!("loading {}", path.display()))?;
            let prompt = decoder.chat_prompt(&[ChatMessage::new("user", PROMPT)])?;
            (decoder.model, prompt, args.decoder.clone())
        }
    };
    if args.streams.contains(&0) {
        anyhow::bail!("--streams: every count must be at least 1");
    }
    model.set_block_rows(args.block_rows);
    for &streams in &args.streams {
        let prompts = vec![prompt.clone(); streams];
        // Warm-up: a whole run, so every cache length and kernel choice has been seen once.
        let _ = model.greedy_batch(&prompts, args.new_tokens, &[])?;
        for _ in 0..args.repeat {
            // Prefill alone (one new token), then prefill plus decoding; the difference is decoding.
            let started = Instant::now();
            let _ = model.greedy_batch(&prompts, 1, &[])?;
            let prefill = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let (out, _) = model.greedy_batch(&prompts, args.new_tokens, &[])?;
            let total = started.elapsed().as_secs_f64();
            let generated: usize = out.iter().map(Vec::len).sum();
            let decode_secs = (total - prefill).max(1e-9);
            println!(
                "{}",
                serde_json::json!({
                    "system": "memgpt",
                    "model": name,
                    "device": memgpt_models::device::device_name(device),
                    "streams": streams,
                    "prompt_tokens": prompt.len(),
                    "new_tokens_per_stream": args.new_tokens,
                    "prefill_tokens_per_s": (prompt.len() * streams) as f64 / prefill,
                    "decode_tokens_per_s": (generated - streams) as f64 / decode_secs,
                    "threads": tch::get_num_threads(),
                    "block_rows": args.block_rows,
                    "block_bytes": model.block_bytes(),
                })
            );
        }
    }
    Ok(())
}
