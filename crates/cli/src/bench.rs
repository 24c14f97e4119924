//! `memgpt bench`: model throughput, printed as one JSON line per run so a driver script can
//! compare it with its peers measured in the same run (see docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use memgpt_models::bert::{Bert, Precision};
use memgpt_models::chat::ChatMessage;
use memgpt_models::decoder::Decoder;
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
    #[command(flatten)]
    model: ModelArgs,
}

/// Options of `memgpt bench decoder`.
#[derive(Debug, clap::Args)]
pub struct DecoderBench {
    /// Sequences decoded together.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Tokens generated per stream.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Model file or folder under the models directory.
    #[arg(long, default_value = memgpt_models::DEFAULT_DECODER)]
    decoder: String,
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
    let precision = if args.precision == "bf16" { Precision::Bf16 } else { Precision::F32 };
    let device = memgpt_models::device::parse_device(&args.model.device)?;
    let dir = memgpt_models::models_dir(args.model.models_dir.clone()).join(memgpt_models::DEFAULT_ENCODER);
    let bert = Bert::load(&dir, device, precision)?;
    bert.embed(&texts[..texts.len().min(args.batch_size)], args.batch_size)?;
    let started = Instant::now();
    let out = bert.embed(&texts, args.batch_size)?;
    let secs = started.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"system": format!("memgpt-{}", args.precision), "documents": out.len(), "seconds": secs, "documents_per_s": out.len() as f64 / secs, "threads": tch::get_num_threads()}));
    Ok(())
}

pub fn decoder(args: DecoderBench) -> anyhow::Result<()> {
    if args.model.threads > 0 {
        tch::set_num_threads(args.model.threads as i32);
    }
    let device = memgpt_models::device::parse_device(&args.model.device)?;
    let path = memgpt_models::models_dir(args.model.models_dir.clone()).join(&args.decoder);
    let decoder = Decoder::load(&path, device, if device.is_cuda() { Kind::BFloat16 } else { Kind::Float }).with_context(|| format!("loading {}", path.display()))?;
    let prompt = decoder.chat_prompt(&[ChatMessage::new("user", PROMPT)])?;
    let prompts = vec![prompt.clone(); args.streams];
    // Warm-up.
    let _ = decoder.greedy_batch(&prompts, 2)?;
    // Prefill alone (one new token), then prefill plus decoding; the difference is decoding.
    let started = Instant::now();
    let _ = decoder.greedy_batch(&prompts, 1)?;
    let prefill = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (out, _) = decoder.greedy_batch_no_eos(&prompts, args.new_tokens)?;
    let total = started.elapsed().as_secs_f64();
    let generated: usize = out.iter().map(Vec::len).sum();
    let decode_secs = (total - prefill).max(1e-9);
    println!(
        "{}",
        serde_json::json!({
            "system": "memgpt",
            "streams": args.streams,
            "prompt_tokens": prompt.len(),
            "new_tokens_per_stream": args.new_tokens,
            "prefill_tokens_per_s": (prompt.len() * args.streams) as f64 / prefill,
            "decode_tokens_per_s": (generated - args.streams) as f64 / decode_secs,
            "threads": tch::get_num_threads(),
        })
    );
    Ok(())
}
