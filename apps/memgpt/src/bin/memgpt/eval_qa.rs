//! `memgpt eval qa`: SQuAD-format question answering through a gateway. The paragraphs of a
//! fixed question subset, plus distractor paragraphs, are remembered; each question is asked
//! (greedy) in each attend mode and answer style; EM and F1 (SQuAD's scoring), answer length,
//! median latency, the share of questions whose own paragraph was retrieved, attribution
//! accuracy (among those, the share whose own paragraph has the highest attention share, and
//! the highest ablation score with `--attribution ablation`), and the share of identical
//! answers across modes are printed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use futures::StreamExt;
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;

use crate::client::{describe, ClientArgs};
use crate::squad::{exact_match, f1, stable_hash, Squad};

/// Options of `memgpt eval qa`.
#[derive(Debug, clap::Args)]
pub struct QaArgs {
    /// SQuAD v1.1 JSON file (.json or .json.gz).
    #[arg(long)]
    data: PathBuf,
    /// A running gateway; without it the three services run in-process.
    #[arg(long)]
    addr: Option<String>,
    /// API key for --addr.
    #[arg(long, env = "MEMGPT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Questions in the fixed subset.
    #[arg(long, default_value_t = 200)]
    questions: usize,
    /// Every question of the file (overrides --questions).
    #[arg(long)]
    all: bool,
    /// Paragraphs of other questions remembered beside the subset's own.
    #[arg(long, default_value_t = 100)]
    distractors: usize,
    /// Attend modes to compare (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "concat,fused")]
    modes: Vec<String>,
    /// Memories retrieved per question.
    #[arg(long, default_value_t = 4)]
    top_k: u32,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: u32,
    /// Sentences a free answer ends after (0: no limit; unset: the gateway's default).
    #[arg(long)]
    max_sentences: Option<u32>,
    /// Answer styles to compare (comma-separated): free, extractive.
    #[arg(long, value_delimiter = ',', default_value = "free")]
    styles: Vec<String>,
    /// Attribution: attention, or ablation (each memory left out once as well).
    #[arg(long, default_value = "attention", value_parser = ["attention", "ablation"])]
    attribution: String,
    /// Questions in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Namespace the paragraphs are remembered in.
    #[arg(long, default_value = "squad-eval")]
    namespace: String,
    #[command(flatten)]
    model: crate::ModelArgs,
}

struct ModeResult {
    mode: String,
    answers: Vec<Asked>,
}

/// One answer: its text, whether the question's own paragraph was retrieved, which memory has
/// the highest attention share and ablation score, and its latency.
struct Asked {
    text: String,
    hit: bool,
    top_share: Option<String>,
    top_ablation: Option<String>,
    latency_ms: f64,
}

pub fn qa(args: QaArgs) -> anyhow::Result<()> {
    let squad = Squad::load(&args.data)?;
    let questions = squad.subset(if args.all { usize::MAX } else { args.questions });
    let mut own: BTreeSet<usize> = questions.iter().map(|q| q.passage).collect();
    let mut others: Vec<usize> = (0..squad.passages.len()).filter(|p| !own.contains(p)).collect();
    others.sort_by_key(|p| stable_hash(&squad.passages[*p].id));
    own.extend(others.into_iter().take(args.distractors));
    for m in &args.modes {
        anyhow::ensure!(m == "concat" || m == "fused", "--modes: `{m}` is not an attend mode (concat, fused)");
    }
    for s in &args.styles {
        anyhow::ensure!(s == "free" || s == "extractive", "--styles: `{s}` is not an answer style (free, extractive)");
    }
    crate::serve::against(args.addr.as_deref(), &args.model, |_| {}, |addr| async {
        let client = ClientArgs { addr, api_key: args.api_key.clone(), ca_cert: None };
        let results = run(&args, &squad, &questions, &own, &client).await?;
        let n = questions.len() as f64;
        println!("questions {}", questions.len());
        println!("paragraphs {}", own.len());
        for r in &results {
            let m = &r.mode;
            let em: f64 = questions.iter().zip(&r.answers).map(|(q, a)| exact_match(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
            let f: f64 = questions.iter().zip(&r.answers).map(|(q, a)| f1(&a.text, &q.answers)).sum::<f64>() / n * 100.0;
            println!("EM[{m}] {em:.2}");
            println!("F1[{m}] {f:.2}");
            println!("answer_words_mean[{m}] {:.1}", r.answers.iter().map(|a| a.text.split_whitespace().count() as f64).sum::<f64>() / n);
            println!("latency_ms_median[{m}] {:.1}", crate::eval_attend::median(r.answers.iter().map(|a| a.latency_ms).collect()));
            let hits = r.answers.iter().filter(|a| a.hit).count();
            println!("retrieval_hit_rate[{m}] {:.4}", hits as f64 / n);
            let own = |i: usize| squad.passages[questions[i].passage].id.as_str();
            let right = |top: fn(&Asked) -> Option<&String>| {
                let ok = r.answers.iter().enumerate().filter(|(i, a)| a.hit && top(a).is_some_and(|id| id == own(*i))).count();
                ok as f64 / hits.max(1) as f64
            };
            println!("attribution_accuracy_attention[{m}] {:.4}", right(|a| a.top_share.as_ref()));
            if args.attribution == "ablation" {
                println!("attribution_accuracy_ablation[{m}] {:.4}", right(|a| a.top_ablation.as_ref()));
            }
        }
        for (i, a) in results.iter().enumerate() {
            for b in &results[i + 1..] {
                let same = a.answers.iter().zip(&b.answers).filter(|(x, y)| x.text.trim() == y.text.trim()).count();
                println!("identical_answers[{}={}] {:.4}", a.mode, b.mode, same as f64 / n);
            }
        }
        Ok(())
    })
}

async fn run(
    args: &QaArgs,
    squad: &Squad,
    questions: &[&crate::squad::Question],
    passages: &BTreeSet<usize>,
    client: &ClientArgs,
) -> anyhow::Result<Vec<ModeResult>> {
    let gateway = client.connect().await?;
    let docs: Vec<gw::Document> = passages
        .iter()
        .map(|p| {
            let p = &squad.passages[*p];
            gw::Document { id: p.id.clone(), text: p.text.clone(), metadata: [("title".to_string(), p.title.clone())].into(), ..Default::default() }
        })
        .collect();
    let started = std::time::Instant::now();
    for batch in docs.chunks(64) {
        let req = gw::RememberRequest { namespace: args.namespace.clone(), documents: batch.to_vec(), warm: false, ..Default::default() };
        let resp = gateway.clone().remember(req).await.map_err(|s| anyhow::anyhow!("remember: {}", describe(&s)))?.into_inner();
        if let Some(bad) = resp.results.iter().find(|r| r.status != gw::DocumentStatus::Stored as i32) {
            anyhow::bail!("paragraph {} was not stored: {}", bad.document_id, bad.error);
        }
    }
    eprintln!("remembered {} paragraphs in {:.1} s", docs.len(), started.elapsed().as_secs_f64());
    let mut results = Vec::new();
    let attribution = crate::commands::attribution(Some(&args.attribution));
    let passes = args.styles.iter().flat_map(|style| args.modes.iter().map(move |mode| (mode, style)));
    for (mode, style) in passes {
        let name = if style == "free" { mode.clone() } else { format!("{mode}/{style}") };
        let started = std::time::Instant::now();
        let asks = questions.iter().map(|q| {
            let mut gateway = gateway.clone();
            let own = squad.passages[q.passage].id.clone();
            let req = gw::AskRequest {
                question: q.question.clone(),
                namespaces: vec![args.namespace.clone()],
                top_k: Some(args.top_k),
                attend_mode: crate::commands::attend_mode(Some(mode)),
                params: Some(gen::SamplingParams {
                    max_new_tokens: Some(args.max_new_tokens),
                    temperature: Some(0.0),
                    max_sentences: args.max_sentences,
                    ..Default::default()
                }),
                answer_style: crate::commands::answer_style(Some(style)),
                attribution,
                ..Default::default()
            };
            async move {
                let t = std::time::Instant::now();
                let resp = gateway.ask(req).await?.into_inner();
                let latency_ms = t.elapsed().as_secs_f64() * 1e3;
                let doc = |id: Option<String>| id.and_then(|id| resp.citations.iter().find(|c| c.memory_id == id).map(|c| c.document_id.clone()));
                let top_share = doc(crate::eval_attend::top_by(&resp.citations, |c| &c.memory_id, |c| Some(c.attention)));
                let top_ablation = doc(crate::eval_attend::top_by(&resp.citations, |c| &c.memory_id, |c| c.ablation));
                let hit = resp.citations.iter().any(|c| c.document_id == own);
                Ok::<_, tonic::Status>(Asked { text: resp.answer, hit, top_share, top_ablation, latency_ms })
            }
        });
        let outcomes: Vec<_> = futures::stream::iter(asks).buffered(args.concurrency.max(1)).collect().await;
        match outcomes.iter().find_map(|o| o.as_ref().err()) {
            Some(s) if s.code() == tonic::Code::Unimplemented => {
                println!("unavailable[{name}] {}", s.message());
                continue;
            }
            Some(s) => anyhow::bail!("{name}: {}", describe(s)),
            None => {}
        }
        let answers: Vec<Asked> = outcomes.into_iter().map(|o| o.expect("checked above")).collect();
        eprintln!("{name}: {} questions in {:.1} s", answers.len(), started.elapsed().as_secs_f64());
        results.push(ModeResult { mode: name, answers });
    }
    anyhow::ensure!(!results.is_empty(), "no attend mode could be evaluated");
    Ok(results)
}
