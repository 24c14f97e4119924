//! Client commands against a gateway: ask, search, forget, info, chat.

use std::io::{BufRead, Write};

use anyhow::Context;
use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;
use memgpt_proto::memory::v1 as mem;

use crate::client::{describe, ranking, ClientArgs};

/// Retrieval options shared by ask, search and chat.
#[derive(Debug, Clone, clap::Args)]
pub struct Retrieval {
    /// Namespaces to read (repeatable).
    #[arg(long = "namespace", short = 'n', default_value = "default")]
    pub namespaces: Vec<String>,
    /// Memories to retrieve (server default when unset).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Lowest retrieval score kept.
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Metadata filter `key=value` (repeatable; all must hold).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Ranking: dense (cosine), sparse (BM25) or hybrid (both fused); server default when unset.
    #[arg(long, value_parser = ["dense", "sparse", "hybrid"])]
    pub retrieval: Option<String>,
    /// How hybrid fuses its lists: rrf or convex (server default when unset).
    #[arg(long, value_parser = ["rrf", "convex"])]
    pub fusion: Option<String>,
    /// RRF's k (at least 1).
    #[arg(long)]
    pub rrf_k: Option<u32>,
    /// The dense list's weight in a convex fusion, in [0, 1].
    #[arg(long)]
    pub dense_weight: Option<f32>,
    /// Only memories valid at this time (RFC 3339, e.g. 2024-05-01T00:00:00Z; default: now).
    #[arg(long)]
    pub as_of: Option<String>,
}

impl Retrieval {
    /// The request's ranking; `None` (the gateway's default) when no option is given.
    pub fn ranking(&self) -> Option<mem::Retrieval> {
        if self.retrieval.is_none() && self.fusion.is_none() && self.rrf_k.is_none() && self.dense_weight.is_none() {
            return None;
        }
        Some(ranking(self.retrieval.as_deref(), self.fusion.as_deref(), self.rrf_k, self.dense_weight))
    }

    /// The request's `as_of` (empty: now).
    pub fn as_of(&self) -> String {
        self.as_of.clone().unwrap_or_default()
    }
}

/// Generation options shared by ask and chat.
#[derive(Debug, Clone, clap::Args)]
pub struct Generation {
    /// How memories are attended: concat or fused (server default when unset).
    #[arg(long, value_parser = ["concat", "fused"])]
    pub attend_mode: Option<String>,
    /// Most tokens in the answer.
    #[arg(long)]
    pub max_new_tokens: Option<u32>,
    /// Sampling temperature (0: greedy).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Answer style: free, or extractive (a verbatim span of a memory; server default when
    /// unset).
    #[arg(long, value_parser = ["free", "extractive"])]
    pub style: Option<String>,
    /// Sentences a free answer ends after (0: no limit; server default when unset).
    #[arg(long)]
    pub max_sentences: Option<u32>,
    /// Attribution: attention (shares), or ablation (also each memory left out once).
    #[arg(long, value_parser = ["attention", "ablation"])]
    pub attribution: Option<String>,
    /// Citations ordered by attribution instead of retrieval.
    #[arg(long)]
    pub by_attribution: bool,
}

/// Parses `key=value` filters.
pub fn filter(filters: &[String]) -> anyhow::Result<Option<mem::Filter>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let must = filters
        .iter()
        .map(|f| {
            let (k, v) = f.split_once('=').with_context(|| format!("--where `{f}`: expected KEY=VALUE"))?;
            Ok(mem::Condition { key: k.into(), predicate: Some(mem::condition::Predicate::Equals(v.into())) })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(mem::Filter { must }))
}

/// The attend mode's wire value.
pub fn attend_mode(mode: Option<&str>) -> i32 {
    match mode {
        Some("concat") => gen::AttendMode::Concat as i32,
        Some("fused") => gen::AttendMode::Fused as i32,
        _ => gen::AttendMode::Unspecified as i32,
    }
}

/// The answer style's wire value.
pub fn answer_style(style: Option<&str>) -> i32 {
    match style {
        Some("free") => gen::AnswerStyle::Free as i32,
        Some("extractive") => gen::AnswerStyle::Extractive as i32,
        _ => gen::AnswerStyle::Unspecified as i32,
    }
}

/// The attribution's wire value.
pub fn attribution(a: Option<&str>) -> i32 {
    match a {
        Some("attention") => gen::Attribution::Attention as i32,
        Some("ablation") => gen::Attribution::Ablation as i32,
        _ => gen::Attribution::Unspecified as i32,
    }
}

impl Generation {
    fn params(&self) -> gen::SamplingParams {
        gen::SamplingParams {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            seed: self.seed,
            max_sentences: self.max_sentences,
            ..Default::default()
        }
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Prints the citations of an answer or a search.
pub fn print_citations(out: &mut impl Write, citations: &[gw::Citation], attention: bool) -> std::io::Result<()> {
    for (i, c) in citations.iter().enumerate() {
        let mut share = if attention { format!("  attention {:.3}", c.attention) } else { String::new() };
        if let Some(a) = c.ablation {
            share += &format!("  ablation {a:.2}");
        }
        let snippet: String = c.snippet.chars().take(100).collect::<String>().replace('\n', " ");
        let rank = |r: u32| if r == 0 { "-".to_string() } else { r.to_string() };
        let found = if c.hop > 1 {
            format!("  hop {} from {} via {:?}", c.hop, c.via, c.via_entity)
        } else {
            format!("  dense #{} bm25 #{}", rank(c.dense_rank), rank(c.sparse_rank))
        };
        writeln!(out, "[{}] {}  score {:.3}{share}{found}  ({})  {snippet}", i + 1, c.memory_id, c.score, c.namespace)?;
    }
    Ok(())
}

/// Streams one answer to stdout, then its citations; returns the final response.
async fn stream_answer(stream: tonic::Streaming<gw::AskStreamResponse>, json: bool) -> anyhow::Result<gw::AskResponse> {
    let mut stream = stream;
    let mut out = std::io::stdout().lock();
    loop {
        let msg = stream.message().await.map_err(|s| anyhow::anyhow!(describe(&s)))?.context("the answer stream ended early")?;
        if !json && !msg.delta.is_empty() {
            write!(out, "{}", msg.delta)?;
            out.flush()?;
        }
        if let Some(answer) = msg.r#final {
            if json {
                writeln!(out, "{}", serde_json::to_string(&crate::batch::record::answer_json(&answer))?)?;
            } else {
                writeln!(out, "\n")?;
                print_citations(&mut out, &answer.citations, true)?;
            }
            return Ok(answer);
        }
    }
}

/// `memgpt ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question.
    pub question: String,
    #[command(flatten)]
    pub retrieval: Retrieval,
    #[command(flatten)]
    pub generation: Generation,
    /// Hops of facts to follow after retrieval (1: the search alone; server default 1).
    #[arg(long)]
    pub max_hops: Option<u32>,
    /// Print the final response as one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

pub fn ask(client: ClientArgs, args: AskArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut gateway = client.connect().await?;
        let req = gw::AskRequest {
            question: args.question,
            namespaces: args.retrieval.namespaces.clone(),
            top_k: args.retrieval.top_k,
            filter: filter(&args.retrieval.filters)?,
            min_score: args.retrieval.min_score,
            attend_mode: attend_mode(args.generation.attend_mode.as_deref()),
            params: Some(args.generation.params()),
            retrieval: args.retrieval.ranking(),
            as_of: args.retrieval.as_of(),
            max_hops: args.max_hops,
            answer_style: answer_style(args.generation.style.as_deref()),
            attribution: attribution(args.generation.attribution.as_deref()),
            order_by_attribution: args.generation.by_attribution,
            ..Default::default()
        };
        let stream = gateway.ask_stream(req).await.map_err(|s| anyhow::anyhow!(describe(&s)))?.into_inner();
        stream_answer(stream, args.json).await.map(drop)
    })
}

/// `memgpt search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The query.
    pub query: String,
    #[command(flatten)]
    pub retrieval: Retrieval,
    /// One result per document (its best chunk).
    #[arg(long)]
    pub by_document: bool,
    /// Print the response as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn search(client: ClientArgs, args: SearchArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut gateway = client.connect().await?;
        let req = gw::SearchRequest {
            question: args.query,
            namespaces: args.retrieval.namespaces.clone(),
            top_k: args.retrieval.top_k,
            filter: filter(&args.retrieval.filters)?,
            min_score: args.retrieval.min_score,
            group_by_document: args.by_document,
            retrieval: args.retrieval.ranking(),
            as_of: args.retrieval.as_of(),
        };
        let resp = gateway.search(req).await.map_err(|s| anyhow::anyhow!(describe(&s)))?.into_inner();
        let mut out = std::io::stdout().lock();
        if args.json {
            let cites: Vec<_> = resp.citations.iter().map(crate::batch::record::citation_json).collect();
            writeln!(out, "{}", serde_json::json!({"citations": cites, "trace_id": resp.trace_id}))?;
        } else if resp.citations.is_empty() {
            writeln!(out, "no results")?;
        } else {
            print_citations(&mut out, &resp.citations, false)?;
        }
        Ok(())
    })
}

/// `memgpt forget`.
#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// Document ids to delete.
    pub ids: Vec<String>,
    /// Namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Delete every chunk whose metadata matches `key=value` (repeatable) instead of ids.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Delete every chunk whose TTL has passed, now (instead of ids or filters).
    #[arg(long)]
    pub expired: bool,
}

pub fn forget(client: ClientArgs, args: ForgetArgs) -> anyhow::Result<()> {
    let given = [!args.ids.is_empty(), !args.filters.is_empty(), args.expired].iter().filter(|g| **g).count();
    if given != 1 {
        anyhow::bail!("give document ids, --where filters or --expired (one of the three)");
    }
    runtime()?.block_on(async {
        let mut gateway = client.connect().await?;
        let req = gw::ForgetRequest { namespace: args.namespace, document_ids: args.ids, filter: filter(&args.filters)?, expired: args.expired };
        let resp = gateway.forget(req).await.map_err(|s| anyhow::anyhow!(describe(&s)))?.into_inner();
        println!("forgot {} chunks", resp.forgotten);
        Ok(())
    })
}

/// `memgpt info`.
pub fn info(client: ClientArgs, json: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut gateway = client.connect().await?;
        let i = gateway.info(gw::InfoRequest {}).await.map_err(|s| anyhow::anyhow!(describe(&s)))?.into_inner();
        if json {
            let backends: Vec<_> = i
                .backends
                .iter()
                .map(|b| serde_json::json!({"service": b.service, "address": b.address, "healthy": b.healthy, "in_flight": b.in_flight}))
                .collect();
            let g = i.generator.as_ref().map(|g| {
                serde_json::json!({"model": g.model, "device": g.device, "dtype": g.dtype, "context_length": g.context_length,
                    "max_batch": g.max_batch, "active_sequences": g.active_sequences, "waiting_requests": g.waiting_requests,
                    "tokens_generated": g.tokens_generated})
            });
            println!(
                "{}",
                serde_json::json!({"version": i.version, "auth_enabled": i.auth_enabled, "key_id": i.key_id, "namespaces": i.namespaces,
                    "encoder": i.encoder, "default_top_k": i.default_top_k, "backends": backends, "generator": g})
            );
            return Ok(());
        }
        println!("gateway {}  auth {}  key {}", i.version, if i.auth_enabled { "on" } else { "off" }, i.key_id);
        if !i.namespaces.is_empty() {
            println!("namespaces {}", i.namespaces.join(", "));
        }
        let ranking = i.default_retrieval.map(|r| {
            let mode = mem::RetrievalMode::try_from(r.mode).map(|m| m.as_str_name().trim_start_matches("RETRIEVAL_MODE_").to_lowercase()).unwrap_or_default();
            let fusion = if r.fusion == mem::Fusion::Convex as i32 {
                format!("convex, dense weight {}", r.dense_weight.unwrap_or_default())
            } else {
                format!("rrf, k {}", r.rrf_k.unwrap_or_default())
            };
            format!("  retrieval {mode} ({fusion})")
        });
        println!("encoder {}  default top_k {}{}", i.encoder, i.default_top_k, ranking.unwrap_or_default());
        for b in &i.backends {
            println!("{:<9} {}  {}  in flight {}", b.service, b.address, if b.healthy { "healthy" } else { "DOWN" }, b.in_flight);
        }
        match &i.generator {
            Some(g) => println!(
                "model {} on {} ({}), context {}, batch {}/{} running, {} waiting, {} tokens generated",
                g.model, g.device, g.dtype, g.context_length, g.active_sequences, g.max_batch, g.waiting_requests, g.tokens_generated
            ),
            None => println!("generator: no endpoint answered"),
        }
        Ok(())
    })
}

/// `memgpt chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Session id (a new one when unset); reuse it to continue a conversation.
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub retrieval: Retrieval,
    #[command(flatten)]
    pub generation: Generation,
    /// Hops of facts to follow after retrieval (1: the search alone; server default 1).
    #[arg(long)]
    pub max_hops: Option<u32>,
}

pub fn chat(client: ClientArgs, args: ChatArgs) -> anyhow::Result<()> {
    let session = args.session.clone().unwrap_or_else(|| format!("chat-{}", uuid::Uuid::new_v4().simple()));
    runtime()?.block_on(async {
        let mut gateway = client.connect().await?;
        eprintln!("session {session}; /reset forgets the conversation, /exit or end of input leaves");
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            eprint!("> ");
            let Some(line) = lines.next() else { break };
            let line = line?;
            match line.trim() {
                "" => continue,
                "/exit" | "/quit" => break,
                "/reset" => {
                    let r = gateway.delete_session(gw::DeleteSessionRequest { session_id: session.clone() }).await;
                    match r {
                        Ok(r) => eprintln!("forgot {} turns", r.into_inner().deleted),
                        Err(s) => eprintln!("error: {}", describe(&s)),
                    }
                    continue;
                }
                _ => {}
            }
            let req = gw::ChatRequest {
                session_id: session.clone(),
                message: line,
                namespaces: args.retrieval.namespaces.clone(),
                top_k: args.retrieval.top_k,
                filter: filter(&args.retrieval.filters)?,
                min_score: args.retrieval.min_score,
                attend_mode: attend_mode(args.generation.attend_mode.as_deref()),
                params: Some(args.generation.params()),
                retrieval: args.retrieval.ranking(),
                as_of: args.retrieval.as_of(),
                max_hops: args.max_hops,
                answer_style: answer_style(args.generation.style.as_deref()),
                attribution: attribution(args.generation.attribution.as_deref()),
                order_by_attribution: args.generation.by_attribution,
            };
            match gateway.chat(req).await {
                Ok(stream) => {
                    if let Err(e) = stream_answer(stream.into_inner(), false).await {
                        eprintln!("error: {e:#}");
                    }
                }
                Err(s) => eprintln!("error: {}", describe(&s)),
            }
        }
        Ok(())
    })
}
