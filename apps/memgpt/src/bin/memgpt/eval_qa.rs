//! `memgpt eval qa`: SQuAD-format question answering through a gateway. The paragraphs of a
//! fixed question subset, plus distractor paragraphs, are remembered; each question is asked
//! (greedy) in each attend mode; EM and F1 (SQuAD's scoring), the share of questions whose
//! own paragraph was retrieved, and the share of identical answers across modes are printed.

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
    answers: Vec<String>,
    hits: usize,
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
    crate::serve::against(args.addr.as_deref(), &args.model, |_| {}, |addr| async {
        let client = ClientArgs { addr, api_key: args.api_key.clone(), ca_cert: None };
        let results = run(&args, &squad, &questions, &own, &client).await?;
        let n = questions.len() as f64;
        println!("questions {}", questions.len());
        println!("paragraphs {}", own.len());
        for r in &results {
            let em: f64 = questions.iter().zip(&r.answers).map(|(q, a)| exact_match(a, &q.answers)).sum::<f64>() / n * 100.0;
            let f: f64 = questions.iter().zip(&r.answers).map(|(q, a)| f1(a, &q.answers)).sum::<f64>() / n * 100.0;
            println!("EM[{}] {em:.2}", r.mode);
            println!("F1[{}] {f:.2}", r.mode);
            println!("retrieval_hit_rate[{}] {:.4}", r.mode, r.hits as f64 / n);
        }
        if let [a, b] = &results[..] {
            let same = a.answers.iter().zip(&b.answers).filter(|(x, y)| x.trim() == y.trim()).count();
            println!("identical_answers[{}={}] {:.4}", a.mode, b.mode, same as f64 / n);
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
    for mode in &args.modes {
        let started = std::time::Instant::now();
        let asks = questions.iter().map(|q| {
            let mut gateway = gateway.clone();
            let own = squad.passages[q.passage].id.clone();
            let req = gw::AskRequest {
                question: q.question.clone(),
                namespaces: vec![args.namespace.clone()],
                top_k: Some(args.top_k),
                attend_mode: crate::commands::attend_mode(Some(mode)),
                params: Some(gen::SamplingParams { max_new_tokens: Some(args.max_new_tokens), temperature: Some(0.0), ..Default::default() }),
                ..Default::default()
            };
            async move {
                let resp = gateway.ask(req).await?.into_inner();
                let hit = resp.citations.iter().any(|c| c.document_id == own);
                Ok::<_, tonic::Status>((resp.answer, hit))
            }
        });
        let outcomes: Vec<_> = futures::stream::iter(asks).buffered(args.concurrency.max(1)).collect().await;
        match outcomes.iter().find_map(|o| o.as_ref().err()) {
            Some(s) if s.code() == tonic::Code::Unimplemented => {
                println!("unavailable[{mode}] {}", s.message());
                continue;
            }
            Some(s) => anyhow::bail!("{mode}: {}", describe(s)),
            None => {}
        }
        let (answers, hits): (Vec<String>, Vec<bool>) = outcomes.into_iter().map(|o| o.expect("checked above")).unzip();
        eprintln!("{mode}: {} questions in {:.1} s", answers.len(), started.elapsed().as_secs_f64());
        results.push(ModeResult { mode: mode.clone(), hits: hits.iter().filter(|h| **h).count(), answers });
    }
    anyhow::ensure!(!results.is_empty(), "no attend mode could be evaluated");
    Ok(results)
}
