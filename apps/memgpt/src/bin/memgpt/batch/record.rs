//! The batch job's lines: input questions as read, output records as written.

use memgpt_proto::gateway::v1 as gw;
use memgpt_proto::generator::v1 as gen;
use serde_json::{json, Value};

/// One question of the input, ready to ask.
#[derive(Debug, Clone)]
pub struct Question {
    /// The input's id.
    pub id: String,
    /// 1-based line number in the input.
    pub line: usize,
    /// The request.
    pub request: gw::AskRequest,
}

/// An input line: a question, or an error record for it.
pub enum Parsed {
    /// A question to ask.
    Ask(Question),
    /// A line that cannot be asked, with its id (`line:N` when it has none).
    Bad { id: String, line: usize, message: String },
}

fn opt_u32(o: &Value, key: &str) -> Result<Option<u32>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| format!("options.{key} must be a non-negative integer")),
    }
}

fn opt_f32(o: &Value, key: &str) -> Result<Option<f32>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| format!("options.{key} must be a number")),
    }
}

fn task(v: Option<&Value>) -> Result<gw::Task, String> {
    match v.map(|v| v.as_str()) {
        None => Ok(gw::Task::Qa),
        Some(Some("qa")) => Ok(gw::Task::Qa),
        Some(Some("summarize")) => Ok(gw::Task::Summarize),
        Some(Some("translate")) => Ok(gw::Task::Translate),
        _ => Err("task must be \"qa\", \"summarize\" or \"translate\"".into()),
    }
}

fn opt_str<'a>(o: &'a Value, key: &str, allowed: &[&str]) -> Result<Option<&'a str>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.as_str())),
        Some(_) => Err(format!("options.{key} must be one of {}", allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", "))),
    }
}

/// The line's ranking options (`retrieval`, `fusion`, `rrf_k`, `dense_weight`); `None` leaves
/// the gateway's default.
fn ranking(o: &Value) -> Result<Option<memgpt_proto::memory::v1::Retrieval>, String> {
    let mode = opt_str(o, "retrieval", &["dense", "sparse", "hybrid"])?;
    let fusion = opt_str(o, "fusion", &["rrf", "convex"])?;
    let (rrf_k, dense_weight) = (opt_u32(o, "rrf_k")?, opt_f32(o, "dense_weight")?);
    if mode.is_none() && fusion.is_none() && rrf_k.is_none() && dense_weight.is_none() {
        return Ok(None);
    }
    Ok(Some(crate::client::ranking(mode, fusion, rrf_k, dense_weight)))
}

fn request(v: &Value, default_namespace: &str, defaults: &gen::SamplingParams) -> Result<gw::AskRequest, String> {
    let question = match v.get("question") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        Some(Value::String(_)) => return Err("`question` is empty".into()),
        Some(_) => return Err("`question` must be a string".into()),
        None => return Err("no `question`".into()),
    };
    let namespaces = match (v.get("namespace"), v.get("namespaces")) {
        (Some(Value::String(n)), None) => vec![n.clone()],
        (None, Some(Value::Array(list))) => {
            list.iter().map(|n| n.as_str().map(str::to_owned).ok_or("`namespaces` must be a list of strings")).collect::<Result<_, _>>()?
        }
        (None, None) => vec![default_namespace.to_string()],
        (Some(_), Some(_)) => return Err("give `namespace` or `namespaces`, not both".into()),
        _ => return Err("`namespace` must be a string (or `namespaces` a list of strings)".into()),
    };
    let empty = json!({});
    let o = match v.get("options") {
        None | Some(Value::Null) => &empty,
        Some(o @ Value::Object(_)) => o,
        Some(_) => return Err("`options` must be an object".into()),
    };
    let attend_mode = match o.get("attend_mode").map(|m| m.as_str()) {
        None => gen::AttendMode::Unspecified,
        Some(Some("concat")) => gen::AttendMode::Concat,
        Some(Some("fused")) => gen::AttendMode::Fused,
        _ => return Err("options.attend_mode must be \"concat\" or \"fused\"".into()),
    };
    let seed = match o.get("seed") {
        None | Some(Value::Null) => defaults.seed,
        Some(s) => Some(s.as_u64().ok_or("options.seed must be a non-negative integer")?),
    };
    let params = gen::SamplingParams {
        max_new_tokens: opt_u32(o, "max_new_tokens")?.or(defaults.max_new_tokens),
        temperature: opt_f32(o, "temperature")?.or(defaults.temperature),
        top_p: opt_f32(o, "top_p")?,
        top_k: None,
        repetition_penalty: opt_f32(o, "repetition_penalty")?,
        seed,
        stop: Vec::new(),
        max_sentences: opt_u32(o, "max_sentences")?,
        first_token_logprobs: 0,
    };
    let answer_style = match o.get("style").map(|m| m.as_str()) {
        None => gen::AnswerStyle::Unspecified,
        Some(Some("free")) => gen::AnswerStyle::Free,
        Some(Some("extractive")) => gen::AnswerStyle::Extractive,
        _ => return Err("options.style must be \"free\" or \"extractive\"".into()),
    };
    Ok(gw::AskRequest {
        question,
        namespaces,
        top_k: opt_u32(o, "top_k")?,
        filter: None,
        min_score: opt_f32(o, "min_score")?,
        attend_mode: attend_mode as i32,
        task: task(v.get("task"))? as i32,
        target_language: v.get("target_language").and_then(Value::as_str).unwrap_or_default().to_string(),
        params: Some(params),
        retrieval: ranking(o)?,
        as_of: match v.get("as_of") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err("`as_of` must be an RFC 3339 time string".into()),
        },
        max_hops: opt_u32(o, "max_hops")?,
        answer_style: answer_style as i32,
        ..Default::default()
    })
}

/// Parses input line `line` (1-based).
pub fn parse(text: &str, line: usize, default_namespace: &str, defaults: &gen::SamplingParams) -> Parsed {
    let fallback = format!("line:{line}");
    let v: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Parsed::Bad { id: fallback, line, message: "the line is not a JSON object".into() },
        Err(e) => return Parsed::Bad { id: fallback, line, message: format!("the line is not JSON: {e}") },
    };
    let id = match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Parsed::Bad { id: fallback, line, message: "no `id` (a non-empty string or a number)".into() },
    };
    match request(&v, default_namespace, defaults) {
        Ok(request) => Parsed::Ask(Question { id, line, request }),
        Err(message) => Parsed::Bad { id, line, message },
    }
}

/// A citation as JSON.
pub fn citation_json(c: &gw::Citation) -> Value {
    let mut v = json!({"memory_id": c.memory_id, "document_id": c.document_id, "namespace": c.namespace, "score": c.score, "attention": c.attention,
        "dense_rank": c.dense_rank, "sparse_rank": c.sparse_rank, "hop": c.hop, "via": c.via, "via_entity": c.via_entity, "snippet": c.snippet});
    if let Some(a) = c.ablation {
        v["ablation"] = json!(a);
    }
    v
}

/// An answer as JSON.
pub fn answer_json(a: &gw::AskResponse) -> Value {
    let finish = gen::FinishReason::try_from(a.finish_reason).map(|f| f.as_str_name().trim_start_matches("FINISH_REASON_").to_lowercase()).unwrap_or_default();
    let usage = a.usage.map(|u| json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}));
    json!({
        "answer": a.answer,
        "citations": a.citations.iter().map(citation_json).collect::<Vec<_>>(),
        "finish_reason": finish,
        "usage": usage,
        "trace_id": a.trace_id,
        "quote": a.quote.as_ref().map(|q| json!({"memory_id": q.memory_id, "citation": q.memory_index, "start": q.start, "end": q.end})),
        "prompt_share": a.prompt_share,
    })
}

/// The output record of an answered question.
pub fn ok_record(id: &str, answer: &gw::AskResponse, latency_ms: f64) -> Value {
    let mut v = answer_json(answer);
    let map = v.as_object_mut().expect("answer_json gives an object");
    map.insert("id".into(), json!(id));
    map.insert("status".into(), json!("ok"));
    map.insert("latency_ms".into(), json!((latency_ms * 10.0).round() / 10.0));
    v
}

/// The output record of a question that failed.
pub fn error_record(id: &str, line: usize, code: &str, message: &str) -> Value {
    json!({"id": id, "status": "error", "line": line, "error": {"code": code, "message": message}})
}

/// The status code's name as gRPC writes it (`INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> String {
    let debug = format!("{code:?}");
    let mut out = String::new();
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}
