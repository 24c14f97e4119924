//! Ask and AskStream: validate, encode the question, retrieve, attend and decode on a
//! generator, and output deltas then the final answer with citations, usage, per-stage timings
//! and trace id.

use std::sync::Arc;
use std::time::Instant;

use memgpt_proto::gateway::v1::{AskRequest, AskResponse, AskStreamResponse, Task, Timings};
use memgpt_proto::generator::v1 as gen;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::{GatewayError, Result};
use crate::stages::retrieve::{needs_vector, retrieve, Query};
use crate::stages::{attend, graph, output, Gateway};
use crate::trace::Trace;
use crate::validate;

fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// What a question brings beyond its request.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// A chat session's own namespace, searched beside the named ones (the key's own, not
    /// subject to its namespace list).
    pub recall: Option<String>,
    /// The caller's instructions, added to the task's system prompt (an OpenAI `system`
    /// message).
    pub instructions: String,
    /// Earlier turns of the conversation, before the question (OpenAI `messages`).
    pub history: Vec<gen::Message>,
}

/// Runs a question; deltas go to `tx` as they come, then the final response.
pub async fn ask(
    gw: Arc<Gateway>,
    who: Principal,
    trace: Trace,
    mut req: AskRequest,
    context: Context,
    tx: mpsc::Sender<std::result::Result<AskStreamResponse, tonic::Status>>,
) -> Result<AskResponse> {
    let Context { recall, instructions, history } = context;
    let started = Instant::now();
    let task = validate::task(req.task)?;
    validate::question(&gw.config, "question", &req.question)?;
    validate::target_language(task, &req.target_language)?;
    validate::answer(req.answer_style, req.attribution)?;
    req.answer_style = gw.config.answer_style(req.answer_style);
    let extractive = req.answer_style == gen::AnswerStyle::Extractive as i32;
    if extractive && task == Task::Translate {
        return Err(GatewayError::precondition("answer_style", "a translation is not a quote of a memory; ask for the free style"));
    }
    let top_k = validate::retrieval(&gw.config, &who, &req.namespaces, req.top_k, req.min_score, task != Task::Translate && recall.is_none())?;
    let retrieval = validate::ranking(&gw.config, req.retrieval.as_ref())?;
    validate::min_score(req.min_score, &retrieval)?;
    validate::time("as_of", &req.as_of)?;
    let max_hops = validate::max_hops(&gw.config, "max_hops", req.max_hops)?;
    req.namespaces.extend(recall);
    let span = tracing::info_span!("ask", trace_id = %trace.trace_id, key = %who.key_id, task = task.as_str_name(), top_k, mode = req.attend_mode);
    async move {
        let mut timings = Timings::default();
        let mut hits = Vec::new();
        if !req.namespaces.is_empty() {
            let t = Instant::now();
            let vector = if needs_vector(&retrieval) { gw.encoder.encode_one(&req.question).await? } else { Vec::new() };
            timings.encode_ms = since(t);
            let t = Instant::now();
            let query = Query {
                vector,
                text: &req.question,
                retrieval,
                as_of: &req.as_of,
                namespaces: &req.namespaces,
                top_k,
                filter: req.filter.clone(),
                min_score: req.min_score,
            };
            hits = retrieve(&gw.memory, &trace, query).await?;
            if max_hops > 1 {
                let scope = graph::Scope { namespaces: &req.namespaces, as_of: &req.as_of };
                hits = graph::follow(&gw.memory, &trace, &scope, hits, max_hops, gw.config.hop_bounds()).await?;
            }
            timings.retrieve_ms = since(t);
        }
        if extractive && hits.is_empty() {
            return Err(GatewayError::precondition("answer_style", "an extractive answer quotes a memory, and none was retrieved (no namespaces, or nothing matched)"));
        }
        let t = Instant::now();
        let prompt = attend::Prompt { task, language: &req.target_language, instructions: &instructions, history: &history, question: &req.question };
        let mut params = req.params.clone().unwrap_or_default();
        if task == Task::Qa && params.max_sentences.is_none() && gw.config.max_sentences > 0 {
            params.max_sentences = Some(gw.config.max_sentences);
        }
        let answer = attend::Answer { style: req.answer_style, attribution: req.attribution };
        let greq = attend::request(&prompt, &hits, gw.config.attend_mode(req.attend_mode), answer, Some(params));
        let last = attend::generate(&gw.generator, &trace, greq, &tx).await?;
        timings.generate_ms = since(t);
        timings.total_ms = since(started);
        Ok(output::answer(&trace, &hits, last, timings, req.order_by_attribution))
    }
    .instrument(span)
    .await
}
