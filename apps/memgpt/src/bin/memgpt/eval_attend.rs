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
    /// Fused passes, one per ratio (comma-separated): the share of each memory's other
    /// tokens recomputed, the most deviating ones (per request; default: one pass at the
    /// generator's own ratio).
    #[arg(long, value_delimiter = ',')]
    recompute_ratio: Vec<f32>,
    /// In-process only: bytes of memory states the generator keeps (raise it so that several
    /// fused passes find the first pass's memories cached).
    #[arg(long)]
    memory_cache_bytes: Option<u64>,
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

/// One pass over the questions: a mode, and in fused mode the recompute ratio (None: the
/// generator's).
#[derive(Clone, Copy)]
pub(crate) struct Pass {
    pub(crate) mode: gen::AttendMode,
    pub(crate) ratio: Option<f32>,
}

impl Pass {
    /// Concat, then one fused pass per ratio (one at the generator's own ratio when none).
    pub(crate) fn all(ratios: &[f32]) -> Vec<Pass> {
        let mut passes = vec![Pass { mode: gen::AttendMode::Concat, ratio: None }];
        match ratios {
            [] => passes.push(Pass { mode: gen::AttendMode::Fused, ratio: None }),
            ratios => passes.extend(ratios.iter().map(|&r| Pass { mode: gen::AttendMode::Fused, ratio: Some(r) })),
        }
        passes
    }

    pub(crate) fn name(&self) -> String {
        match (self.mode, self.ratio) {
            (gen::AttendMode::Fused, Some(r)) => format!("fused@{r}"),
            (gen::AttendMode::Fused, None) => "fused".into(),
            _ => "concat".into(),
        }
    }
}

async fn answer(mut client: Generator, q: &Question, memories: Vec<gen::Memory>, pass: Pass, max_new: u32) -> Result<Answer, tonic::Status> {
    let req = gen::GenerateRequest {
        messages: vec![gen::Message { role: "system".into(), content: INSTRUCTION.into() }, gen::Message { role: "user".into(), content: q.question.clone() }],
        memories,
        attend_mode: pass.mode as i32,
        recompute_ratio: pass.ratio,
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

/// The median of `v` (0 for none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub fn attend(args: AttendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.others < 64, "--others: {} is more than 63", args.others);
    let tuned = args.recompute_head_tokens.is_some() || args.memory_cache_bytes.is_some();
    anyhow::ensure!(args.addr.is_none() || !tuned, "--recompute-head-tokens and --memory-cache-bytes configure the in-process generator; set them on the server given by --addr");
    if let Some(r) = args.recompute_ratio.iter().find(|r| !(0.0..=1.0).contains(*r)) {
        anyhow::bail!("--recompute-ratio: {r} is outside 0..=1");
    }
    let squad = Squad::load(&args.data)?;
    let questions = squad.subset(if args.all { usize::MAX } else { args.questions });
    crate::serve::against(args.addr.as_deref(), &args.model, |serve| {
            serve.recompute_head_tokens = args.recompute_head_tokens;
            serve.memory_cache_bytes = args.memory_cache_bytes;
        }, |addr| async {
        let client = ClientArgs { addr, api_key: args.api_key.clone(), ca_cert: None };
        run(&args, &squad, &questions, &client).await
    })
}

async fn run(args: &AttendArgs, squad: &Squad, questions: &[&Question], client: &ClientArgs) -> anyhow::Result<()> {
    let generator = client.connect_generator().await?;
    let info = generator.clone().info(gen::InfoRequest {}).await.map_err(|s| anyhow::anyhow!("info: {}", describe(&s)))?.into_inner();
    let passes = Pass::all(&args.recompute_ratio);
    let mut results: Vec<Vec<Answer>> = Vec::new();
    for &pass in &passes {
        let started = std::time::Instant::now();
        let asks = questions.iter().map(|q| answer(generator.clone(), q, memories_of(squad, q, args.others), pass, args.max_new_tokens));
        let outcomes: Vec<_> = futures::stream::iter(asks).buffered(args.concurrency.max(1)).collect().await;
        let answers = outcomes.into_iter().collect::<Result<Vec<_>, _>>().map_err(|s| anyhow::anyhow!("{}: {}", pass.name(), describe(&s)))?;
        eprintln!("{}: {} questions in {:.1} s", pass.name(), answers.len(), started.elapsed().as_secs_f64());
        results.push(answers);
    }
    let after = generator.clone().info(gen::InfoRequest {}).await.map_err(|s| anyhow::anyhow!("info: {}", describe(&s)))?.into_inner();
    let n = questions.len() as f64;
    println!("questions {}", questions.len());
    println!("memories_per_question {}", args.others + 1);
    println!("recompute_head_tokens {}", after.recompute_head_tokens);
    println!("recompute_ratio {}", after.recompute_ratio);
    for (pass, answers) in passes.iter().zip(&results) {
        let mode = pass.name();
        let em: f64 = questions.iter().zip(answers).map(|(q, a)| exact_match(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
        let f: f64 = questions.iter().zip(answers).map(|(q, a)| f1(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
        println!("EM[{mode}] {em:.2}");
        println!("F1[{mode}] {f:.2}");
        println!("ttft_ms_median[{mode}] {:.1}", median(answers.iter().map(|a| a.ttft_ms).collect()));
    }
    for (pass, answers) in passes.iter().zip(&results).skip(1) {
        let same = results[0].iter().zip(answers).filter(|(a, b)| a.text.trim() == b.text.trim()).count();
        println!("identical_answers[{}] {:.4}", pass.name(), same as f64 / n);
    }
    println!("prompt_tokens_mean {:.1}", results[0].iter().map(|a| f64::from(a.prompt_tokens)).sum::<f64>() / n);
    println!("memory_cache_hits {}", after.memory_cache_hits - info.memory_cache_hits);
    println!("memory_cache_misses {}", after.memory_cache_misses - info.memory_cache_misses);
    if let Some(path) = &args.answers {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
        for (i, q) in questions.iter().enumerate() {
            let mut line = serde_json::json!({"id": q.id, "question": q.question, "gold": q.answers});
            for (pass, answers) in passes.iter().zip(&results) {
                line[pass.name()] = answers[i].text.clone().into();
            }
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    Ok(())
}
