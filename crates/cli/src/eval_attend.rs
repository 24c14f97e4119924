//! `memgpt eval attend`: the fused attend mode against concat on SQuAD, straight against the
//! generator. Each question's memories are its own paragraph and paragraphs of other articles
//! (4 by default), in a shuffled order fixed by the question id; each question is answered
//! greedily in both modes. Printed: EM and F1 per mode (SQuAD's scoring), the share of
//! questions whose answers are identical, time to first token, and the memory-KV cache's
//! counters.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use futures::StreamExt;
use memgpt_proto::generator::v1 as gen;

use crate::client::{describe, ClientArgs, Generator};
use crate::squad::{exact_match, f1, stable_hash, Question, Squad};

/// Options of `memgpt eval attend`.
#[derive(Debug, clap::Args)]
pub struct AttendArgs {
    /// SQuAD v1.1 JSON file (.json or .json.gz).
    #[arg(long)]
    data: PathBuf,
    /// A generator, or `memgpt serve`; without it the services run in-process.
    #[arg(long)]
    addr: Option<String>,
    /// API key for --addr (an operator key for `memgpt serve`).
    #[arg(long, env = "MEMGPT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Questions in the fixed subset.
    #[arg(long, default_value_t = 200)]
    questions: usize,
    /// Every question of the file (overrides --questions).
    #[arg(long)]
    all: bool,
    /// Paragraphs of other articles given beside each question's own.
    #[arg(long, default_value_t = 4)]
    others: usize,
    /// Most tokens per answer (an answer also ends at its first line break).
    #[arg(long, default_value_t = 24)]
    max_new_tokens: u32,
    /// Questions in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// In-process only: leading tokens of each memory recomputed in fused mode.
    #[arg(long)]
    recompute_head_tokens: Option<u32>,
    /// Also write each question's answers as JSONL to this file.
    #[arg(long)]
    answers: Option<PathBuf>,
    #[command(flatten)]
    model: crate::ModelArgs,
}

const INSTRUCTION: &str = "Answer the question with a short phrase taken from the passages below.";

/// The memories of a question: its own paragraph and `others` paragraphs of other articles,
/// shuffled; the same on every run.
pub fn memories_of(squad: &Squad, q: &Question, others: usize) -> Vec<gen::Memory> {
    let own = &squad.passages[q.passage];
    let mut picked: Vec<usize> = (0..squad.passages.len()).filter(|&p| squad.passages[p].article != own.article).collect();
    picked.sort_by_key(|&p| stable_hash(&format!("{}|{}", q.id, squad.passages[p].id)));
    picked.truncate(others);
    picked.push(q.passage);
    picked.sort_by_key(|&p| stable_hash(&format!("order|{}|{}", q.id, squad.passages[p].id)));
    picked.into_iter().map(|p| gen::Memory { id: squad.passages[p].id.clone(), text: squad.passages[p].text.clone() }).collect()
}

struct Answer {
    text: String,
    ttft_ms: f64,
    prompt_tokens: u32,
}

async fn answer(mut client: Generator, q: &Question, memories: Vec<gen::Memory>, mode: gen::AttendMode, max_new: u32) -> Result<Answer, tonic::Status> {
    let req = gen::GenerateRequest {
        messages: vec![gen::Message { role: "system".into(), content: INSTRUCTION.into() }, gen::Message { role: "user".into(), content: q.question.clone() }],
        memories,
        attend_mode: mode as i32,
        params: Some(gen::SamplingParams { max_new_tokens: Some(max_new), temperature: Some(0.0), stop: vec!["\n".into()], ..Default::default() }),
        ..Default::default()
    };
    let mut stream = client.generate(req).await?.into_inner();
    while let Some(msg) = stream.message().await? {
        if let Some(last) = msg.r#final {
            let prompt_tokens = last.usage.map(|u| u.prompt_tokens).unwrap_or(0);
            return Ok(Answer { text: last.text, ttft_ms: last.ttft_ms, prompt_tokens });
        }
    }
    Err(tonic::Status::unavailable("the stream ended without a final message"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub fn attend(args: AttendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.others < 64, "--others: {} is more than 63", args.others);
    anyhow::ensure!(args.addr.is_none() || args.recompute_head_tokens.is_none(), "--recompute-head-tokens configures the in-process generator; set it on the server given by --addr");
    let squad = Squad::load(&args.data)?;
    let questions = squad.subset(if args.all { usize::MAX } else { args.questions });
    crate::serve::against(args.addr.as_deref(), &args.model, |serve| serve.recompute_head_tokens = args.recompute_head_tokens, |addr| async {
        let client = ClientArgs { addr, api_key: args.api_key.clone(), ca_cert: None };
        run(&args, &squad, &questions, &client).await
    })
}

async fn run(args: &AttendArgs, squad: &Squad, questions: &[&Question], client: &ClientArgs) -> anyhow::Result<()> {
    let generator = client.connect_generator().await?;
    let info = generator.clone().info(gen::InfoRequest {}).await.map_err(|s| anyhow::anyhow!("info: {}", describe(&s)))?.into_inner();
    let modes = [gen::AttendMode::Concat, gen::AttendMode::Fused];
    let mut results: Vec<Vec<Answer>> = Vec::new();
    for mode in modes {
        let started = std::time::Instant::now();
        let asks = questions.iter().map(|q| answer(generator.clone(), q, memories_of(squad, q, args.others), mode, args.max_new_tokens));
        let outcomes: Vec<_> = futures::stream::iter(asks).buffered(args.concurrency.max(1)).collect().await;
        let answers = outcomes.into_iter().collect::<Result<Vec<_>, _>>().map_err(|s| anyhow::anyhow!("{}: {}", mode.as_str_name(), describe(&s)))?;
        eprintln!("{}: {} questions in {:.1} s", mode.as_str_name(), answers.len(), started.elapsed().as_secs_f64());
        results.push(answers);
    }
    let after = generator.clone().info(gen::InfoRequest {}).await.map_err(|s| anyhow::anyhow!("info: {}", describe(&s)))?.into_inner();
    let n = questions.len() as f64;
    println!("questions {}", questions.len());
    println!("memories_per_question {}", args.others + 1);
    println!("recompute_head_tokens {}", after.recompute_head_tokens);
    for (mode, answers) in ["concat", "fused"].iter().zip(&results) {
        let em: f64 = questions.iter().zip(answers).map(|(q, a)| exact_match(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
        let f: f64 = questions.iter().zip(answers).map(|(q, a)| f1(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
        println!("EM[{mode}] {em:.2}");
        println!("F1[{mode}] {f:.2}");
        println!("ttft_ms_median[{mode}] {:.1}", median(answers.iter().map(|a| a.ttft_ms).collect()));
    }
    let same = results[0].iter().zip(&results[1]).filter(|(a, b)| a.text.trim() == b.text.trim()).count();
    println!("identical_answers {:.4}", same as f64 / n);
    println!("prompt_tokens_mean {:.1}", results[0].iter().map(|a| f64::from(a.prompt_tokens)).sum::<f64>() / n);
    println!("memory_cache_hits {}", after.memory_cache_hits - info.memory_cache_hits);
    println!("memory_cache_misses {}", after.memory_cache_misses - info.memory_cache_misses);
    if let Some(path) = &args.answers {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
        for (i, q) in questions.iter().enumerate() {
            let line = serde_json::json!({"id": q.id, "question": q.question, "gold": q.answers, "concat": results[0][i].text, "fused": results[1][i].text});
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    Ok(())
}
