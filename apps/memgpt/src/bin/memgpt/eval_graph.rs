//! `memgpt eval graph`: multi-hop recall on generated chains of random identifiers.
//!
//! Each chain is `depth` facts `a leads to b`, `b leads to c`, ...; every other chain of a
//! depth (from depth 2) joins the one before it half-way and shares its second half, so chains
//! share entities; distractor facts join random identifiers, half of them pointing into the
//! chains past their heads (edges in, so no walk forward is ambiguous). Each question names only the chain's
//! head ("Where does a lead?"), retrieves one memory (top_k 1), and is right when
//! the answer holds the chain's end. Accuracy per depth, attend mode and `max_hops` (1, and
//! the deepest depth), and the share of answers whose citations hold the whole path.

use std::collections::HashSet;

use anyhow::Context;
use futures::StreamExt;
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::gateway::v1::gateway_client::GatewayClient;
use memgpt_proto::generator::v1 as gen;
use rand::{Rng, SeedableRng};

use crate::eval_gateway::with_key;

/// Options of `memgpt eval graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// A running gateway (http://host:port); without it the three services run in-process.
    #[arg(long, alias = "addr")]
    gateway: Option<String>,
    /// API key for `--gateway`.
    #[arg(long, env = "MEMGPT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Namespace the facts are remembered in (its old facts stay; use a fresh one).
    #[arg(long, default_value = "graph-eval")]
    namespace: String,
    /// Chain depths, comma-separated (facts per chain).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6")]
    depths: Vec<u32>,
    /// Chains (questions) per depth.
    #[arg(long, default_value_t = 20)]
    chains: usize,
    /// Distractor facts.
    #[arg(long, default_value_t = 300)]
    distractors: usize,
    /// Attend modes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "concat,fused", value_parser = ["concat", "fused"])]
    modes: Vec<String>,
    /// Tokens an answer may run to (a recited path of 6 facts takes about 70).
    #[arg(long, default_value_t = 96)]
    max_new_tokens: u32,
    /// Seed of the generated graph.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The question of each chain; `{head}` is replaced by its head.
    #[arg(long, default_value = "Where does {head} lead?")]
    question: String,
    /// Print each wrong answer (standard error).
    #[arg(long)]
    show_wrong: bool,
    /// Questions in flight.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    #[command(flatten)]
    model: crate::ModelArgs,
}

/// A question: the chain's facts in path order, as (subject, object).
struct Chain {
    depth: u32,
    path: Vec<(String, String)>,
}

fn identifier(rng: &mut impl Rng, used: &mut HashSet<String>) -> String {
    loop {
        let mut s = String::new();
        for alphabet in [b"abcdefghijklmnopqrstuvwxyz".as_slice(), b"abcdefghijklmnopqrstuvwxyz", b"0123456789", b"0123456789", b"abcdefghijklmnopqrstuvwxyz", b"abcdefghijklmnopqrstuvwxyz"] {
            s.push(alphabet[rng.gen_range(0..alphabet.len())] as char);
        }
        if used.insert(s.clone()) {
            return s;
        }
    }
}

/// The chains and every fact (chains first, then the distractors), one per edge.
fn generate(args: &GraphArgs) -> (Vec<Chain>, Vec<(String, String)>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut used = HashSet::new();
    let mut chains: Vec<Chain> = Vec::new();
    for &depth in &args.depths {
        for k in 0..args.chains {
            let mut entities: Vec<String> = (0..=depth).map(|_| identifier(&mut rng, &mut used)).collect();
            let half = (depth / 2) as usize;
            if k % 2 == 1 && half >= 1 {
                // Join the previous chain of this depth half-way: the same entities from there on.
                let before = &chains[chains.len() - 1].path;
                for (i, e) in entities.iter_mut().enumerate().skip(half) {
                    *e = if i < before.len() { before[i].0.clone() } else { before[before.len() - 1].1.clone() };
                }
            }
            let path = entities.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect();
            chains.push(Chain { depth, path });
        }
    }
    let mut facts: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    for c in &chains {
        facts.extend(c.path.iter().filter(|e| seen.insert((*e).clone())).cloned());
    }
    // Into the chains past their heads: a question's head stays in one fact only.
    let chain_entities: Vec<String> = chains.iter().flat_map(|c| c.path.iter().skip(1).map(|(s, _)| s.clone())).collect();
    for i in 0..args.distractors {
        let subject = identifier(&mut rng, &mut used);
        let object = if i % 2 == 0 || chain_entities.is_empty() { identifier(&mut rng, &mut used) } else { chain_entities[rng.gen_range(0..chain_entities.len())].clone() };
        facts.push((subject, object));
    }
    (chains, facts)
}

const RELATION: &str = "leads to";

pub fn graph(args: GraphArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.depths.is_empty() && args.depths.iter().all(|d| (1..=32).contains(d)), "--depths: give depths from 1 to 32");
    anyhow::ensure!(args.chains >= 1, "--chains: give at least 1");
    let (chains, facts) = generate(&args);
    let deepest = *args.depths.iter().max().unwrap_or(&1);
    let args = &args;
    let (chains, facts) = (&chains, &facts);
    let lines = crate::serve::against(args.gateway.as_deref(), &args.model, |_| {}, |addr| async move { run(args, &addr, chains, facts, deepest).await })?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

async fn run(args: &GraphArgs, addr: &str, chains: &[Chain], facts: &[(String, String)], deepest: u32) -> anyhow::Result<Vec<String>> {
    let mut client = GatewayClient::connect(addr.to_string()).await.with_context(|| format!("cannot reach the gateway at {addr}"))?;
    let all: Vec<gw::Fact> = facts.iter().map(|(s, o)| gw::Fact { subject: s.clone(), relation: RELATION.into(), object: o.clone(), ..Default::default() }).collect();
    for batch in all.chunks(256) {
        let req = gw::RememberRequest { namespace: args.namespace.clone(), facts: batch.to_vec(), ..Default::default() };
        let resp = client.remember(with_key(req, &args.api_key)?).await?.into_inner();
        if let Some(failed) = resp.results.iter().find(|r| r.status != gw::DocumentStatus::Stored as i32) {
            anyhow::bail!("fact {} was not stored: {}", failed.document_id, failed.error);
        }
    }
    eprintln!("remembered {} facts ({} chains, {} distractors)", all.len(), chains.len(), args.distractors);
    let mut lines = Vec::new();
    for mode in &args.modes {
        let attend_mode = if mode == "fused" { gen::AttendMode::Fused } else { gen::AttendMode::Concat };
        let mut hop_settings = vec![1];
        if deepest > 1 {
            hop_settings.push(deepest);
        }
        for max_hops in hop_settings {
            let asks = chains.iter().map(|c| {
                let mut client = client.clone();
                let req = gw::AskRequest {
                    question: args.question.replace("{head}", &c.path[0].0),
                    namespaces: vec![args.namespace.clone()],
                    top_k: Some(1),
                    attend_mode: attend_mode as i32,
                    params: Some(gen::SamplingParams { max_new_tokens: Some(args.max_new_tokens), temperature: Some(0.0), ..Default::default() }),
                    max_hops: Some(max_hops),
                    ..Default::default()
                };
                let req = with_key(req, &args.api_key);
                async move { Ok::<_, anyhow::Error>(client.ask(req?).await?.into_inner()) }
            });
            let answers: Vec<gw::AskResponse> = futures::stream::iter(asks).buffered(args.concurrency.max(1)).collect::<Vec<_>>().await.into_iter().collect::<anyhow::Result<_>>()?;
            for &depth in &args.depths {
                let (mut right, mut paths, mut n) = (0, 0, 0);
                for (c, a) in chains.iter().zip(&answers).filter(|(c, _)| c.depth == depth) {
                    n += 1;
                    let end = &c.path[c.path.len() - 1].1;
                    let ok = a.answer.to_lowercase().contains(end.as_str());
                    if !ok && args.show_wrong {
                        eprintln!("wrong ({mode}, max_hops {max_hops}, depth {depth}, end {end}): {:?}", a.answer);
                    }
                    right += usize::from(ok);
                    paths += usize::from(cites_path(c, a));
                }
                let share = |k: usize| k as f64 / n.max(1) as f64;
                lines.push(format!("mode {mode} max_hops {max_hops} depth {depth} accuracy {:.3} ({right}/{n}) path_cited {:.3}", share(right), share(paths)));
            }
        }
    }
    Ok(lines)
}

/// Whether the citations hold every fact of the chain, each at its hop.
fn cites_path(chain: &Chain, answer: &gw::AskResponse) -> bool {
    chain.path.iter().enumerate().all(|(i, (s, o))| {
        let text = format!("{s} {RELATION} {o}.");
        answer.citations.iter().any(|c| c.snippet == text && c.hop == i as u32 + 1)
    })
}
