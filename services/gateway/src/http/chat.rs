//! `POST /v1/chat/completions`: OpenAI's chat schema answered through the gateway's pipeline.
//! The last message is the question (a user message); earlier user and assistant messages
//! are the conversation, system (or developer) messages are added to the task's system
//! prompt. The `memgpt` extension object names the namespaces searched, and top_k, filter,
//! min_score, retrieval, attend_mode, max_hops, as_of; the answer's citations come back in a
//! `memgpt` field (of the response, or of the stream's last chunk).

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use memgpt_proto::gateway::v1::{AskRequest, AskResponse, Task};
use memgpt_proto::generator::v1::{self as gen, FinishReason};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{answer_style, attend_mode, attribution, citation, quote, timings, Attend, Attribution, Filter, Retrieval, Style};
use super::{read_json, ApiError, HttpState};
use crate::flows::{self, ask};
use crate::validate;

/// The alias every chat model list holds beside the generator's own name.
pub const MODEL_ALIAS: &str = "memgpt";

/// A chat completion request (fields OpenAI defines that do not apply here are ignored, as
/// OpenAI-compatible servers do; `n` > 1 and tools are refused).
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    memgpt: Extension,
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// A message's content: text, or parts of which only text parts are read.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// The `memgpt` extension object: what is searched and how.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    min_score: Option<f32>,
    #[serde(default)]
    retrieval: Option<Retrieval>,
    #[serde(default)]
    attend_mode: Option<Attend>,
    #[serde(default)]
    max_hops: Option<u32>,
    #[serde(default)]
    as_of: String,
    #[serde(default)]
    answer_style: Option<Style>,
    #[serde(default)]
    attribution: Option<Attribution>,
    #[serde(default)]
    order_by_attribution: bool,
    #[serde(default)]
    max_sentences: Option<u32>,
}

fn text_of(i: usize, m: &ChatMessage) -> Result<String, ApiError> {
    let field = || Some(format!("messages[{i}].content"));
    match &m.content {
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => out.push(t.as_str()),
                    (kind, _) => return Err(ApiError::invalid(Some(format!("messages[{i}].content[{j}]")), format!("only text parts are read (got `{kind}`)"))),
                }
            }
            Ok(out.join("\n"))
        }
        None => Err(ApiError::invalid(field(), "a message needs content")),
    }
}

/// The question, the instructions and the conversation before it.
fn conversation(messages: &[ChatMessage]) -> Result<(String, ask::Context), ApiError> {
    let Some((last, earlier)) = messages.split_last() else {
        return Err(ApiError::invalid(Some("messages".into()), "give at least one message"));
    };
    if last.role != "user" {
        return Err(ApiError::invalid(Some(format!("messages[{}].role", messages.len() - 1)), "the last message must be the user's question"));
    }
    let mut context = ask::Context::default();
    let mut instructions = Vec::new();
    for (i, m) in earlier.iter().enumerate() {
        let content = text_of(i, m)?;
        match m.role.as_str() {
            "system" | "developer" => instructions.push(content),
            "user" | "assistant" => context.history.push(gen::Message { role: m.role.clone(), content }),
            other => {
                return Err(ApiError::invalid(Some(format!("messages[{i}].role")), format!("`{other}` messages are not supported (system, developer, user, assistant)")))
            }
        }
    }
    context.instructions = instructions.join("\n");
    Ok((text_of(messages.len() - 1, last)?, context))
}

fn finish_reason(code: i32) -> &'static str {
    match FinishReason::try_from(code) {
        Ok(FinishReason::Length) => "length",
        _ => "stop",
    }
}

fn usage(answer: &AskResponse) -> Value {
    let u = answer.usage.clone().unwrap_or_default();
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.prompt_tokens + u.completion_tokens})
}

fn extension(answer: &AskResponse) -> Value {
    json!({
        "citations": answer.citations.iter().map(citation).collect::<Vec<_>>(),
        "quote": answer.quote.as_ref().map(quote),
        "prompt_share": answer.prompt_share,
        "trace_id": answer.trace_id,
        "timings": timings(answer.timings.as_ref()),
    })
}

/// The OpenAI request as a gateway question; checks what only this face has.
fn question(state_model: &str, req: CompletionRequest) -> Result<(AskRequest, ask::Context, bool, bool), ApiError> {
    let known = [state_model.to_string(), MODEL_ALIAS.to_string()];
    if !known.contains(&req.model) {
        return Err(ApiError::unknown_model(&req.model, &known));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(Some("n".into()), "only one choice is generated (n = 1)"));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::invalid(Some("tools".into()), "tools are not supported"));
    }
    let (text, context) = conversation(&req.messages)?;
    let stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let params = gen::SamplingParams {
        max_new_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        seed: req.seed,
        stop,
        max_sentences: req.memgpt.max_sentences,
        ..Default::default()
    };
    let ext = req.memgpt;
    let filter = ext.filter.as_ref().map(|f| f.to_proto("memgpt.filter")).transpose()?;
    let ask = AskRequest {
        question: text,
        namespaces: ext.namespaces,
        top_k: ext.top_k,
        filter,
        min_score: ext.min_score,
        attend_mode: attend_mode(ext.attend_mode),
        task: Task::Qa as i32,
        params: Some(params),
        retrieval: ext.retrieval.map(Retrieval::to_proto),
        as_of: ext.as_of,
        max_hops: ext.max_hops,
        answer_style: answer_style(ext.answer_style),
        attribution: attribution(ext.attribution),
        order_by_attribution: ext.order_by_attribution,
        ..Default::default()
    };
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    Ok((ask, context, req.stream.unwrap_or(false), include_usage))
}

/// A check of the question's retrieval names its field inside the `memgpt` object.
fn extension_field(status: tonic::Status) -> ApiError {
    const FIELDS: [&str; 10] = ["namespaces", "top_k", "filter", "min_score", "retrieval", "attend_mode", "max_hops", "as_of", "answer_style", "attribution"];
    let mut err = ApiError::from(status);
    if let Some(p) = err.param.as_mut() {
        if FIELDS.iter().any(|f| p == f || p.starts_with(&format!("{f}.")) || p.starts_with(&format!("{f}["))) {
            *p = format!("memgpt.{p}");
        }
    }
    err
}

fn sse(value: &Value) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(format!("data: {value}\n\n")))
}

/// `POST /v1/chat/completions`.
pub async fn completions(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (gw, who, trace) = state.begin(&headers)?;
    let req: CompletionRequest = read_json(&state, &headers, body).await?;
    let model = state.model(&gw, &trace).await?;
    let (ask_req, context, stream, include_usage) = question(&model, req)?;
    for (i, m) in context.history.iter().enumerate() {
        validate::text(&format!("messages[{i}].content"), &m.content, gw.config.max_document_bytes)?;
    }
    if !context.instructions.is_empty() {
        validate::text("messages (system)", &context.instructions, gw.config.max_question_bytes)?;
    }
    let id = format!("chatcmpl-{}", trace.trace_id);
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut answers = flows::streamed(|tx| ask::ask(gw, who, trace, ask_req, context, tx));
    if !stream {
        let answer = flows::last(answers).await.map_err(extension_field)?;
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer}, "finish_reason": finish_reason(answer.finish_reason), "logprobs": null}],
            "usage": usage(&answer),
            "memgpt": extension(&answer),
        });
        return Ok(axum::Json(body).into_response());
    }
    // The status is known once the checks and retrieval are over: wait for the first message.
    let first = answers.recv().await.ok_or_else(|| tonic::Status::internal("the answer ended before it began")).and_then(|m| m).map_err(extension_field)?;
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
    };
    let events = events(first, answers, chunk, include_usage);
    Ok(([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(events)).into_response())
}

/// The server-sent events of a streamed answer: the role, each delta, the last chunk with the
/// finish reason and the `memgpt` citations, the usage chunk when asked for, `[DONE]`. An
/// error mid-answer is sent as an OpenAI error event, and the stream ends.
fn events(
    first: memgpt_proto::gateway::v1::AskStreamResponse,
    mut answers: flows::Answers,
    chunk: impl Fn(Value, Option<&str>) -> Value + Send + 'static,
    include_usage: bool,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        if tx.send(sse(&chunk(json!({"role": "assistant", "content": ""}), None))).await.is_err() {
            return;
        }
        let mut next = Some(Ok(first));
        while let Some(msg) = next.take() {
            match msg {
                Ok(m) if m.r#final.is_some() => {
                    let answer = m.r#final.unwrap_or_default();
                    let mut last = chunk(json!({}), Some(finish_reason(answer.finish_reason)));
                    last["memgpt"] = extension(&answer);
                    let _ = tx.send(sse(&last)).await;
                    if include_usage {
                        let mut u = chunk(json!({}), None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(&answer);
                        let _ = tx.send(sse(&u)).await;
                    }
                    let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
                    return;
                }
                Ok(m) => {
                    if !m.delta.is_empty() && tx.send(sse(&chunk(json!({"content": m.delta}), None))).await.is_err() {
                        return; // the client went away: dropping `answers` cancels the generation
                    }
                }
                Err(status) => {
                    let _ = tx.send(sse(&ApiError::from(status).body())).await;
                    return;
                }
            }
            next = answers.recv().await;
        }
    }));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
