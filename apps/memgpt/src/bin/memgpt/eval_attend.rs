//! `memgpt eval attend`: the fused attend mode against concat on SQuAD, straight against the
//! generator. Each question's memories are its own paragraph and paragraphs of other articles
//! (4 by default), in a shuffled order fixed by the question id; each question is answered
//! greedily in both modes, in each answer style asked for. Printed: EM and F1 per mode and
//! style (SQuAD's scoring), answer length, the share of questions whose answers are
//! identical, time to first token, attribution accuracy (the question's own paragraph has the
//! highest attention share, and with `--attribution ablation` the highest ablation score),
//! for extractive answers the share whose quote is a verbatim span at its offsets, and the
//! memory-KV cache's counters.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use futures::StreamExt;
use memgpt_proto::generator::v1 as gen;

use crate::client::{describe, ClientArgs, Generator};
use crate::passes::{FusedPasses, Pass};
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
    /// Questions of the fixed order passed over first: `--skip 200` takes questions outside
    /// the 200-question evaluation subset (held out, to tune settings on).
    #[arg(long, default_value_t = 0)]
    skip: usize,
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
    #[command(flatten)]
    fused: FusedPasses,
    /// Also an oracle pass (fused): only each question's own passage recomputed whole, the
    /// other memories as cached (deviation rule, ratio 0): the ceiling of choosing what to
    /// recompute.
    #[arg(long)]
    oracle: bool,
    /// In-process only: bytes of memory states the generator keeps (raise it so that several
    /// fused passes find the first pass's memories cached).
    #[arg(long)]
    memory_cache_bytes: Option<u64>,
    /// Attend modes (comma-separated): concat, fused (one fused pass per recompute ratio).
    #[arg(long, value_delimiter = ',', default_value = "concat,fused")]
    modes: Vec<String>,
    /// Answer styles (comma-separated): free, extractive.
    #[arg(long, value_delimiter = ',', default_value = "free")]
    styles: Vec<String>,
    /// Sentences a free answer ends after (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_sentences: u32,
    /// Attribution asked for: attention, or ablation (each memory left out once as well).
    #[arg(long, default_value = "attention", value_parser = ["attention", "ablation"])]
    attribution: String,
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

pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) ttft_ms: f64,
    pub(crate) prompt_tokens: u32,
    /// Memory id of the highest attention share, and of the highest ablation score.
    pub(crate) top_share: Option<String>,
    pub(crate) top_ablation: Option<String>,
    /// Extractive: the quote is exactly the answer, at its offsets in the memory it names.
    pub(crate) quote_ok: bool,
    /// Extractive: the memory id the quote names.
    pub(crate) quote_memory: Option<String>,
    /// The most likely first tokens and their log-probabilities, most likely first.
    pub(crate) first: Vec<(u32, f32)>,
}

/// First tokens whose log-probabilities each answer reports.
const FIRST_TOKENS: u32 = 64;

/// KL(p ‖ q) of two first-token distributions over p's reported tokens; a token q does not
/// report gets q's least reported log-probability (at least its own), so the figure is a
/// lower bound where q's list is cut.
fn first_token_kl(p: &[(u32, f32)], q: &[(u32, f32)]) -> f64 {
    let floor = q.last().map_or(f32::NEG_INFINITY, |x| x.1);
    p.iter().map(|&(t, lp)| f64::from(lp).exp() * f64::from(lp - q.iter().find(|x| x.0 == t).map_or(floor, |x| x.1))).sum()
}

/// The memory id with the highest `score`.
pub(crate) fn top_by<T>(items: &[T], id: impl Fn(&T) -> &str, score: impl Fn(&T) -> Option<f32>) -> Option<String> {
    items.iter().filter_map(|x| score(x).map(|s| (id(x), s))).max_by(|a, b| a.1.total_cmp(&b.1)).map(|(id, _)| id.to_string())
}

/// Whether `quote` names a memory of `memories` whose text at its character offsets is `text`.
pub(crate) fn quote_holds(quote: Option<&gen::Quote>, text: &str, memories: &[(String, String)]) -> bool {
    let Some(q) = quote else { return false };
    memories.iter().find(|(id, _)| *id == q.memory_id).is_some_and(|(_, m)| {
        let span: String = m.chars().skip(q.start as usize).take(q.end.saturating_sub(q.start) as usize).collect();
        !text.is_empty() && span == text
    })
}

/// What every question of a run is asked with, beside its pass.
#[derive(Clone, Copy)]
struct Asking {
    max_new: u32,
    max_sentences: u32,
    ablation: bool,
}

/// `own`: the index of the question's own passage among `memories`.
async fn answer(mut client: Generator, q: &Question, memories: Vec<gen::Memory>, own: u32, pass: Pass, asking: Asking) -> Result<Answer, tonic::Status> {
    let texts: Vec<(String, String)> = memories.iter().map(|m| (m.id.clone(), m.text.clone())).collect();
    let attribution = if asking.ablation { gen::Attribution::Ablation } else { gen::Attribution::Attention };
    let params = gen::SamplingParams {
        max_new_tokens: Some(asking.max_new),
        temperature: Some(0.0),
        stop: vec!["\n".into()],
        max_sentences: Some(asking.max_sentences),
        first_token_logprobs: FIRST_TOKENS,
        ..Default::default()
    };
    let messages = vec![gen::Message { role: "system".into(), content: INSTRUCTION.into() }, gen::Message { role: "user".into(), content: q.question.clone() }];
    let recompute_memories = if pass.oracle { vec![own] } else { Vec::new() };
    let req = gen::GenerateRequest { attribution: attribution as i32, recompute_memories, ..pass.request(messages, memories, params) };
    let mut stream = client.generate(req).await?.into_inner();
    while let Some(msg) = stream.message().await? {
        if let Some(last) = msg.r#final {
            let prompt_tokens = last.usage.map(|u| u.prompt_tokens).unwrap_or(0);
            let top_share = top_by(&last.attention, |a| &a.memory_id, |a| Some(a.share));
            let top_ablation = top_by(&last.attention, |a| &a.memory_id, |a| a.ablation);
            let quote_ok = quote_holds(last.quote.as_ref(), &last.text, &texts);
            let quote_memory = last.quote.as_ref().map(|q| q.memory_id.clone());
            let first = last.first_token_logprobs.iter().map(|t| (t.token_id, t.logprob)).collect();
            return Ok(Answer { text: last.text, ttft_ms: last.ttft_ms, prompt_tokens, top_share, top_ablation, quote_ok, quote_memory, first });
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
    args.fused.passes()?;
    let squad = Squad::load(&args.data)?;
    let mut questions = squad.subset(if args.all { usize::MAX } else { args.questions.saturating_add(args.skip) });
    anyhow::ensure!(args.skip < questions.len(), "--skip {} leaves none of the file's {} questions", args.skip, questions.len());
    questions.drain(..args.skip);
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
    let mut passes = Vec::new();
    for style in &args.styles {
        anyhow::ensure!(style == "free" || style == "extractive", "--styles: `{style}` is not an answer style (free, extractive)");
        let wanted = |p: &Pass| args.modes.iter().any(|m| (m == "fused") == (p.mode == gen::AttendMode::Fused));
        passes.extend(args.fused.passes()?.into_iter().filter(wanted).map(|p| Pass { extractive: style == "extractive", ..p }));
        if args.oracle {
            let rule = Some(gen::RecomputeRule::Deviation);
            passes.push(Pass { ratio: Some(0.0), rule, extractive: style == "extractive", oracle: true, ..Pass::FUSED });
        }
    }
    for m in &args.modes {
        anyhow::ensure!(m == "concat" || m == "fused", "--modes: `{m}` is not an attend mode (concat, fused)");
    }
    anyhow::ensure!(!passes.is_empty(), "--modes and --styles leave nothing to evaluate");
    let asking = Asking { max_new: args.max_new_tokens, max_sentences: args.max_sentences, ablation: args.attribution == "ablation" };
    let mut results: Vec<Vec<Answer>> = Vec::new();
    for &pass in &passes {
        let started = std::time::Instant::now();
        let asks = questions.iter().map(|q| {
            let memories = memories_of(squad, q, args.others);
            let own = memories.iter().position(|m| m.id == squad.passages[q.passage].id).expect("a question's memories hold its own passage") as u32;
            answer(generator.clone(), q, memories, own, pass, asking)
        });
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
    println!("recompute_rule {}", after.recompute_rule().as_str_name());
    println!("memory_temperature {}", after.memory_temperature);
    println!("memory_scale {}", after.memory_scale);
    for (pass, answers) in passes.iter().zip(&results) {
        let mode = pass.name();
        let em: f64 = questions.iter().zip(answers).map(|(q, a)| exact_match(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
        let f: f64 = questions.iter().zip(answers).map(|(q, a)| f1(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
        println!("EM[{mode}] {em:.2}");
        println!("F1[{mode}] {f:.2}");
        println!("ttft_ms_median[{mode}] {:.1}", median(answers.iter().map(|a| a.ttft_ms).collect()));
        println!("answer_words_mean[{mode}] {:.1}", answers.iter().map(|a| a.text.split_whitespace().count() as f64).sum::<f64>() / n);
        let own = |i: usize| squad.passages[questions[i].passage].id.as_str();
        let right = |top: fn(&Answer) -> Option<&String>| answers.iter().enumerate().filter(|(i, a)| top(a).is_some_and(|id| id == own(*i))).count() as f64 / n;
        println!("attribution_accuracy_attention[{mode}] {:.4}", right(|a| a.top_share.as_ref()));
        if asking.ablation {
            println!("attribution_accuracy_ablation[{mode}] {:.4}", right(|a| a.top_ablation.as_ref()));
        }
        if pass.extractive {
            println!("verbatim_quotes[{mode}] {:.4}", answers.iter().filter(|a| a.quote_ok).count() as f64 / n);
            println!("quotes_from_own_passage[{mode}] {:.4}", right(|a| a.quote_memory.as_ref()));
        }
    }
    for (i, (pass, answers)) in passes.iter().zip(&results).enumerate() {
        // Against the concat pass of the same style.
        let Some(base) = passes.iter().position(|p| p.extractive == pass.extractive && p.mode == gen::AttendMode::Concat).filter(|&b| b != i) else { continue };
        let same = results[base].iter().zip(answers).filter(|(a, b)| a.text.trim() == b.text.trim()).count();
        println!("identical_answers[{}] {:.4}", pass.name(), same as f64 / n);
        // SQuAD's token F1 of this pass's answer against the concat answer as the reference.
        let agreement: f64 = results[base].iter().zip(answers).map(|(a, b)| f1(&b.text, std::slice::from_ref(&a.text))).sum::<f64>() / n;
        println!("answer_f1_to_concat[{}] {:.4}", pass.name(), agreement);
        // The first token's distribution against concat's: the same most likely token, and KL.
        let top1 = results[base].iter().zip(answers).filter(|(a, b)| a.first.first().map(|x| x.0) == b.first.first().map(|x| x.0)).count();
        println!("first_token_top1_agreement[{}] {:.4}", pass.name(), top1 as f64 / n);
        let kl: f64 = results[base].iter().zip(answers).map(|(a, b)| first_token_kl(&a.first, &b.first)).sum::<f64>() / n;
        println!("first_token_kl_to_concat[{}] {kl:.4}", pass.name());
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
                if let Some(m) = &answers[i].quote_memory {
                    line[format!("{}:quote_from_own", pass.name())] = (*m == squad.passages[q.passage].id).into();
                }
            }
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    Ok(())
}
