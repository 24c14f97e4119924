//! Attend (and decode): the generation request that hands the retrieved memories to the
//! generator, whose decoder attends to them (concat: in the prompt; fused: their cached
//! key/value states), and the generator's stream relayed to the client as it decodes.

use memgpt_proto::gateway::v1::{AskStreamResponse, Task};
use memgpt_proto::generator::v1 as gen;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::retrieve::Retrieved;
use crate::clients::GeneratorClient;
use crate::error::{GatewayError, Result};
use crate::trace::Trace;

/// The system prompt of each task.
pub fn system_prompt(task: Task, language: &str) -> String {
    match task {
        Task::Summarize => "Summarise what the passages below say about the user's request, in a few sentences.".into(),
        Task::Translate => format!("Translate the user's message into {language}. Reply with the translation only."),
        Task::Qa | Task::Unspecified => "Answer the user's question using the passages below. Answer briefly, in one sentence.".into(),
    }
}

/// The short-answer system prompt of an extractive answer to a question: the answer is then
/// a span of a passage, so the model is asked for the few words that answer.
const EXTRACTIVE_QA: &str = "Answer the user's question with the shortest exact phrase from the passages below.";

/// How the answer is written and scored (generator enums).
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer {
    /// `AnswerStyle`.
    pub style: i32,
    /// `Attribution`.
    pub attribution: i32,
}

/// What the decoder is asked: the task (and its language), the caller's instructions, the
/// conversation so far and the question.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    /// The task, whose system prompt leads.
    pub task: Task,
    /// Target language of a translation.
    pub language: &'a str,
    /// Added to the system prompt (empty: none).
    pub instructions: &'a str,
    /// Earlier turns, before the question.
    pub history: &'a [gen::Message],
    /// The question (the last user message).
    pub question: &'a str,
}

/// The generation request of a question over `hits`. Memories go by chunk id and text, as
/// Remember warmed them (the generator's memory-KV cache key); facts reached by hops go as
/// the paths through them (`graph::memories`).
pub fn request(prompt: &Prompt<'_>, hits: &[Retrieved], attend_mode: i32, answer: Answer, params: Option<gen::SamplingParams>) -> gen::GenerateRequest {
    let extractive = answer.style == gen::AnswerStyle::Extractive as i32;
    let mut system = if extractive && matches!(prompt.task, Task::Qa | Task::Unspecified) {
        EXTRACTIVE_QA.to_string()
    } else {
        system_prompt(prompt.task, prompt.language)
    };
    if !prompt.instructions.trim().is_empty() {
        system = format!("{system}\n{}", prompt.instructions.trim());
    }
    let mut messages = Vec::with_capacity(prompt.history.len() + 2);
    messages.push(gen::Message { role: "system".into(), content: system });
    messages.extend(prompt.history.iter().cloned());
    messages.push(gen::Message { role: "user".into(), content: prompt.question.to_string() });
    let (memories, _) = super::graph::memories(hits);
    gen::GenerateRequest {
        messages,
        prompt: String::new(),
        memories,
        recompute_ratio: None,
        recompute_rule: gen::RecomputeRule::Unspecified as i32,
        recompute_memories: Vec::new(),
        memory_temperature: None,
        memory_scale: None,
        attend_mode,
        params,
        answer_style: answer.style,
        attribution: answer.attribution,
    }
}

/// A generator stream cut by a transport failure (the generator died, the connection dropped
/// or stopped answering its pings) reaches here as UNKNOWN; it is UNAVAILABLE to the client:
/// nothing was returned and the request may be retried (another generator takes it). A stream
/// that outlived its deadline is DEADLINE_EXCEEDED.
fn broken_stream(status: tonic::Status) -> tonic::Status {
    if crate::clients::pool::no_answer(&status) {
        tonic::Status::deadline_exceeded(format!("the generation did not end within its deadline: {}", status.message()))
    } else if status.code() == tonic::Code::Unknown {
        tonic::Status::unavailable(format!("the generator's stream broke mid-answer: {}", status.message()))
    } else {
        status
    }
}

/// Runs `req` on a generator, sending each delta to `tx` as it comes, and returns the final
/// message. A client that goes away cancels the generation (the stream is dropped). The whole
/// stream is bounded by the generation's deadline here too: the generator ends a late stream
/// itself, but a partitioned one's end would never arrive (the call's own timeout covers only
/// its start).
pub async fn generate(
    generator: &GeneratorClient,
    trace: &Trace,
    req: gen::GenerateRequest,
    tx: &mpsc::Sender<std::result::Result<AskStreamResponse, tonic::Status>>,
) -> Result<gen::GenerateFinal> {
    let span = tracing::info_span!("generate", memories = req.memories.len(), tokens = tracing::field::Empty);
    let limit = generator.deadline();
    let deadline = tokio::time::Instant::now() + limit;
    let (mut stream, _guard) = generator.generate(trace, req).instrument(span.clone()).await?;
    loop {
        let msg = tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                return Err(GatewayError::Deadline { stage: "generate", ms: limit.as_millis() as u64 });
            }
            msg = stream.message() => msg.map_err(|status| GatewayError::Backend { backend: "generator", status: broken_stream(status) })?,
            () = tx.closed() => return Err(GatewayError::Internal("the client cancelled".into())),
        };
        let Some(msg) = msg else { break };
        if !msg.delta.is_empty() {
            let _ = tx.send(Ok(AskStreamResponse { delta: msg.delta, r#final: None })).await;
        }
        if let Some(last) = msg.r#final {
            span.record("tokens", last.usage.as_ref().map(|u| u.completion_tokens).unwrap_or(0));
            return Ok(last);
        }
    }
    Err(GatewayError::Internal("the generator stream ended without a final message".into()))
}
