//! Ask and AskStream: validate, encode the question, retrieve, generate with the memories, and
//! output deltas then the final answer with citations, usage, per-stage timings and trace id.

use std::sync::Arc;
use std::time::Instant;

use memgpt_proto::gateway::v1::{AskRequest, AskResponse, AskStreamResponse, Citation, Task, Timings};
use memgpt_proto::generator::v1 as gen;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::{GatewayError, Result};
use crate::pipeline::{Gateway, Retrieved, Trace};

const SNIPPET_CHARS: usize = 240;

/// The system prompt of each task.
pub(crate) fn system_prompt(task: Task, language: &str) -> String {
    match task {
        Task::Summarize => "Summarise what the passages below say about the user's request, in a few sentences.".into(),
        Task::Translate => format!("Translate the user's message into {language}. Reply with the translation only."),
        Task::Qa | Task::Unspecified => {
            "Answer the user's question using the passages below. Answer briefly, in one sentence.".into()
        }
    }
}

/// Checks the shared retrieval fields and returns (namespaces, top_k).
pub fn check_retrieval(
    gw: &Gateway,
    who: &Principal,
    namespaces: &[String],
    top_k: Option<u32>,
    min_score: Option<f32>,
    required: bool,
) -> Result<u32> {
    let c = &gw.config;
    if namespaces.is_empty() && required {
        return Err(GatewayError::invalid("namespaces", "name at least one namespace to retrieve from"));
    }
    if namespaces.len() > c.max_namespaces {
        return Err(GatewayError::invalid("namespaces", format!("{} namespaces exceed the limit of {}", namespaces.len(), c.max_namespaces)));
    }
    for (i, ns) in namespaces.iter().enumerate() {
        if ns.is_empty() {
            return Err(GatewayError::invalid(format!("namespaces[{i}]"), "is empty"));
        }
        if namespaces[..i].contains(ns) {
            return Err(GatewayError::invalid(format!("namespaces[{i}]"), format!("`{ns}` is named twice")));
        }
        who.check(&format!("namespaces[{i}]"), ns)?;
    }
    let top_k = top_k.unwrap_or(c.default_top_k);
    if top_k == 0 || top_k > c.max_top_k {
        return Err(GatewayError::invalid("top_k", format!("{top_k} is outside 1..={}", c.max_top_k)));
    }
    if min_score.is_some_and(|s| !s.is_finite() || !(-1.0..=1.0).contains(&s)) {
        return Err(GatewayError::invalid("min_score", "must be a number in [-1, 1]"));
    }
    Ok(top_k)
}

/// A generator stream cut by a transport failure (the generator died or the connection
/// dropped) reaches here as UNKNOWN; it is UNAVAILABLE to the client: nothing was returned and
/// the request may be retried (another generator takes it).
fn broken_stream(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::Unknown {
        tonic::Status::unavailable(format!("the generator's stream broke mid-answer: {}", status.message()))
    } else {
        status
    }
}

/// Checks a question-like text field.
pub fn check_text(gw: &Gateway, field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(GatewayError::invalid(field, "is empty"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(GatewayError::invalid(field, format!("holds the control character {c:?}")));
    }
    if text.len() > gw.config.max_question_bytes {
        return Err(GatewayError::invalid(field, format!("{} bytes exceed the limit of {}", text.len(), gw.config.max_question_bytes)));
    }
    Ok(())
}

/// Citations of the retrieved memories, with the generator's attention shares.
pub fn citations(hits: &[Retrieved], attention: &[gen::MemoryAttention]) -> Vec<Citation> {
    hits.iter()
        .enumerate()
        .map(|(i, r)| Citation {
            memory_id: r.hit.id.clone(),
            document_id: r.document_id(),
            score: r.hit.score,
            attention: attention.get(i).filter(|a| a.memory_id == r.hit.id).map(|a| a.share).unwrap_or(0.0),
            snippet: r.hit.text.chars().take(SNIPPET_CHARS).collect(),
            namespace: r.namespace.clone(),
        })
        .collect()
}

/// Runs a question; deltas go to `tx` as they come, then the final response.
pub async fn ask(
    gw: Arc<Gateway>,
    who: Principal,
    trace: Trace,
    mut req: AskRequest,
    recall: Option<String>,
    tx: mpsc::Sender<std::result::Result<AskStreamResponse, tonic::Status>>,
) -> Result<AskResponse> {
    let started = Instant::now();
    let task = Task::try_from(req.task).map_err(|_| GatewayError::invalid("task", format!("unknown value {}", req.task)))?;
    check_text(&gw, "question", &req.question)?;
    if task == Task::Translate && req.target_language.trim().is_empty() {
        return Err(GatewayError::invalid("target_language", "the translate task needs a target language"));
    }
    let top_k = check_retrieval(&gw, &who, &req.namespaces, req.top_k, req.min_score, task != Task::Translate && recall.is_none())?;
    // A chat session's own namespace (the key's, not subject to its namespace list).
    req.namespaces.extend(recall);
    let span = tracing::info_span!("ask", trace_id = %trace.trace_id, key = %who.key_id, task = task.as_str_name(), top_k, mode = req.attend_mode);
    async move {
        let t = Instant::now();
        let mut hits = Vec::new();
        let mut encode_ms = 0.0;
        let mut retrieve_ms = 0.0;
        if !req.namespaces.is_empty() {
            let vector = gw.encode(vec![req.question.clone()]).await?.pop().unwrap_or_default();
            encode_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            hits = gw.retrieve(&trace, vector, &req.namespaces, top_k, req.filter.clone(), req.min_score).await?;
            retrieve_ms = t.elapsed().as_secs_f64() * 1e3;
        }
        let mut messages = vec![gen::Message { role: "system".into(), content: system_prompt(task, &req.target_language) }];
        messages.push(gen::Message { role: "user".into(), content: req.question.clone() });
        // Chunk ids and texts, as Remember warmed them: the generator's memory-KV cache key.
        let memories = hits.iter().map(|r| gen::Memory { id: r.hit.id.clone(), text: r.hit.text.clone() }).collect();
        let greq = gen::GenerateRequest { messages, prompt: String::new(), memories, recompute_ratio: None, attend_mode: gw.config.attend_mode(req.attend_mode), params: req.params.clone() };
        let t = Instant::now();
        let gen_span = tracing::info_span!("generate", memories = hits.len(), tokens = tracing::field::Empty);
        let (mut stream, _guard) = gw.generate(&trace, greq).instrument(gen_span.clone()).await?;
        let mut last = None;
        loop {
            let msg = tokio::select! {
                msg = stream.message() => msg.map_err(|status| GatewayError::Backend { backend: "generator", status: broken_stream(status) })?,
                // The client went away: dropping the stream cancels the generator request.
                () = tx.closed() => return Err(GatewayError::Internal("the client cancelled".into())),
            };
            let Some(msg) = msg else { break };
            if !msg.delta.is_empty() {
                let _ = tx.send(Ok(AskStreamResponse { delta: msg.delta, r#final: None })).await;
            }
            if let Some(f) = msg.r#final {
                last = Some(f);
                break;
            }
        }
        let last = last.ok_or_else(|| GatewayError::Internal("the generator stream ended without a final message".into()))?;
        let generate_ms = t.elapsed().as_secs_f64() * 1e3;
        gen_span.record("tokens", last.usage.as_ref().map(|u| u.completion_tokens).unwrap_or(0));
        let _output = tracing::info_span!("output", citations = hits.len()).entered();
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        for (stage, ms) in [("encode", encode_ms), ("retrieve", retrieve_ms), ("generate", generate_ms), ("total", total_ms)] {
            memgpt_telemetry::metrics::histogram(
                "memgpt_gateway_stage_seconds",
                "Latency of each stage of a question.",
                &[("stage", stage)],
                memgpt_telemetry::metrics::SECONDS_BUCKETS,
            )
            .observe(ms / 1e3);
        }
        Ok(AskResponse {
            answer: last.text.trim().to_string(),
            citations: citations(&hits, &last.attention),
            usage: last.usage,
            timings: Some(Timings { encode_ms, retrieve_ms, generate_ms, ttft_ms: last.ttft_ms, total_ms }),
            trace_id: trace.trace_id.clone(),
            finish_reason: last.finish_reason,
        })
    }
    .instrument(span)
    .await
}
