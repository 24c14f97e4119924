//! Request validation: every problem is INVALID_ARGUMENT (or FAILED_PRECONDITION, for a
//! valid field the rest of the request does not allow) naming the field, found before any
//! work is queued.

use memgpt_models::text::chat::ChatMessage;
use memgpt_proto::generator::v1::{self as pb, AnswerStyle, AttendMode, Attribution, GenerateRequest, Memory};

use crate::config::GeneratorConfig;
use crate::error::{GeneratorError, Result};
use crate::engine::RecomputeRule;
use crate::engine::sampling::SamplingParams;

const MAX_ID_BYTES: usize = 256;
const MAX_STOP_BYTES: usize = 256;
const MAX_FIRST_TOKEN_LOGPROBS: u32 = 64;
/// The memory temperature and scale a request or the service may set.
pub const MEMORY_CALIBRATION: std::ops::RangeInclusive<f32> = 0.25..=4.0;

/// A request that passed validation, with every default filled in.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Chat messages (a raw prompt becomes one user message).
    pub messages: Vec<ChatMessage>,
    /// Memory ids.
    pub memory_ids: Vec<String>,
    /// Memory texts.
    pub memory_texts: Vec<String>,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Most tokens to generate.
    pub max_new: usize,
    /// Sentences a free answer ends after (0: no limit).
    pub max_sentences: usize,
    /// The most likely first tokens reported (0: none).
    pub first_token_logprobs: usize,
    /// The extractive answer style.
    pub extractive: bool,
    /// Leave-one-out attribution asked for.
    pub ablation: bool,
    /// The `fused` attend mode (after the server's default is applied).
    pub fused: bool,
    /// Fused mode: the request's recompute ratio, when it sets one.
    pub recompute_ratio: Option<f32>,
    /// Fused mode: the request's recompute rule, when it sets one.
    pub recompute_rule: Option<RecomputeRule>,
    /// Fused mode: one flag per memory, true for a memory recomputed whole.
    pub recompute_memories: Vec<bool>,
    /// Fused mode: the request's calibration of the attention to memories, where it sets it.
    pub memory_temperature: Option<f32>,
    pub memory_scale: Option<f32>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> GeneratorError {
    GeneratorError::invalid(field, reason)
}

/// Checks `req` against the configured limits.
pub fn check(req: &GenerateRequest, config: &GeneratorConfig) -> Result<Checked> {
    let messages = match (req.messages.is_empty(), req.prompt.is_empty()) {
        (true, true) => return Err(invalid("messages", "the request has no messages and no prompt")),
        (false, false) => return Err(invalid("prompt", "give `messages` or `prompt`, not both")),
        (true, false) => vec![ChatMessage::new("user", &req.prompt)],
        (false, true) => {
            if req.messages.len() > config.max_messages {
                return Err(invalid("messages", format!("{} messages exceed the limit of {}", req.messages.len(), config.max_messages)));
            }
            let mut out = Vec::with_capacity(req.messages.len());
            for (i, m) in req.messages.iter().enumerate() {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                    return Err(invalid(format!("messages[{i}].role"), format!("`{}` is not one of system, user, assistant", m.role.escape_debug())));
                }
                out.push(ChatMessage::new(&m.role, &m.content));
            }
            if out.iter().all(|m| m.content.trim().is_empty()) {
                return Err(invalid("messages", "every message is empty"));
            }
            out
        }
    };
    let prompt_bytes: usize = messages.iter().map(|m| m.content.len()).sum();
    if prompt_bytes > config.max_prompt_bytes {
        let field = if req.prompt.is_empty() { "messages" } else { "prompt" };
        return Err(invalid(field, format!("{prompt_bytes} bytes of text exceed the limit of {}", config.max_prompt_bytes)));
    }
    if req.memories.len() > config.max_memories {
        return Err(invalid("memories", format!("{} memories exceed the limit of {}", req.memories.len(), config.max_memories)));
    }
    check_memories(&req.memories, config)?;
    let fused = match AttendMode::try_from(req.attend_mode) {
        Ok(AttendMode::Unspecified) => config.default_attend_mode == "fused",
        Ok(AttendMode::Concat) => false,
        Ok(AttendMode::Fused) => true,
        Err(_) => return Err(invalid("attend_mode", format!("unknown value {}", req.attend_mode))),
    };
    if let Some(r) = req.recompute_ratio {
        if !fused {
            return Err(invalid("recompute_ratio", "applies to the fused attend mode only"));
        }
        if !(0.0..=1.0).contains(&r) {
            return Err(invalid("recompute_ratio", format!("{r} is outside 0..=1")));
        }
    }
    let recompute_rule = match pb::RecomputeRule::try_from(req.recompute_rule) {
        Ok(pb::RecomputeRule::Unspecified) => None,
        Ok(_) if !fused => return Err(invalid("recompute_rule", "applies to the fused attend mode only")),
        Ok(pb::RecomputeRule::Query) => Some(RecomputeRule::Query),
        Ok(pb::RecomputeRule::Deviation) => Some(RecomputeRule::Deviation),
        Err(_) => return Err(invalid("recompute_rule", format!("unknown value {}", req.recompute_rule))),
    };
    let mut recompute_memories = vec![false; req.memories.len()];
    for &i in &req.recompute_memories {
        if !fused {
            return Err(invalid("recompute_memories", "applies to the fused attend mode only"));
        }
        match recompute_memories.get_mut(i as usize) {
            Some(flag) => *flag = true,
            None => return Err(invalid("recompute_memories", format!("index {i} is not one of the request's {} memories", req.memories.len()))),
        }
    }
    for (field, value) in [("memory_temperature", req.memory_temperature), ("memory_scale", req.memory_scale)] {
        match value {
            Some(_) if !fused => return Err(invalid(field, "applies to the fused attend mode only")),
            Some(v) if !MEMORY_CALIBRATION.contains(&v) => return Err(invalid(field, format!("{v} is outside 0.25..=4"))),
            _ => {}
        }
    }
    let extractive = match AnswerStyle::try_from(req.answer_style) {
        Ok(AnswerStyle::Unspecified | AnswerStyle::Free) => false,
        Ok(AnswerStyle::Extractive) => true,
        Err(_) => return Err(invalid("answer_style", format!("unknown value {}", req.answer_style))),
    };
    if extractive && req.memories.is_empty() {
        return Err(GeneratorError::precondition("answer_style", "an extractive answer quotes a memory, and the request has none"));
    }
    let ablation = match Attribution::try_from(req.attribution) {
        Ok(Attribution::Unspecified | Attribution::Attention) => false,
        Ok(Attribution::Ablation) => true,
        Err(_) => return Err(invalid("attribution", format!("unknown value {}", req.attribution))),
    };
    let p = req.params.clone().unwrap_or_default();
    let max_sentences = p.max_sentences.unwrap_or(config.default_max_sentences);
    if max_sentences > 1000 {
        return Err(invalid("params.max_sentences", format!("{max_sentences} is outside 0..=1000")));
    }
    if p.first_token_logprobs > MAX_FIRST_TOKEN_LOGPROBS {
        return Err(invalid("params.first_token_logprobs", format!("{} is outside 0..={MAX_FIRST_TOKEN_LOGPROBS}", p.first_token_logprobs)));
    }
    let max_new = p.max_new_tokens.unwrap_or(config.default_max_new_tokens);
    if max_new == 0 || max_new > config.max_new_tokens_limit {
        return Err(invalid("params.max_new_tokens", format!("{max_new} is outside 1..={}", config.max_new_tokens_limit)));
    }
    let temperature = p.temperature.unwrap_or(config.default_temperature);
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(invalid("params.temperature", format!("{temperature} must be a finite number >= 0")));
    }
    let top_p = p.top_p.unwrap_or(config.default_top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid("params.top_p", format!("{top_p} is outside (0, 1]")));
    }
    let top_k = p.top_k.unwrap_or(config.default_top_k);
    if top_k > i32::MAX as u32 {
        return Err(invalid("params.top_k", "must be >= 0 (a negative number was sent)"));
    }
    let repetition_penalty = p.repetition_penalty.unwrap_or(config.default_repetition_penalty);
    if !repetition_penalty.is_finite() || repetition_penalty <= 0.0 {
        return Err(invalid("params.repetition_penalty", format!("{repetition_penalty} must be a finite number > 0")));
    }
    if p.stop.len() > config.max_stop {
        return Err(invalid("params.stop", format!("{} stop strings exceed the limit of {}", p.stop.len(), config.max_stop)));
    }
    for (i, s) in p.stop.iter().enumerate() {
        if s.is_empty() || s.len() > MAX_STOP_BYTES {
            return Err(invalid(format!("params.stop[{i}]"), format!("must be 1 to {MAX_STOP_BYTES} bytes")));
        }
    }
    Ok(Checked {
        messages,
        memory_ids: req.memories.iter().map(|m| m.id.clone()).collect(),
        memory_texts: req.memories.iter().map(|m| m.text.clone()).collect(),
        sampling: SamplingParams {
            temperature,
            top_p,
            top_k: top_k as usize,
            repetition_penalty,
            seed: p.seed.unwrap_or_else(rand::random),
        },
        stop: p.stop,
        max_new: max_new as usize,
        max_sentences: max_sentences as usize,
        first_token_logprobs: p.first_token_logprobs as usize,
        extractive,
        ablation,
        fused,
        recompute_ratio: req.recompute_ratio,
        recompute_rule,
        recompute_memories,
        memory_temperature: req.memory_temperature,
        memory_scale: req.memory_scale,
    })
}

/// Checks each memory's id and text.
pub fn check_memories(memories: &[Memory], config: &GeneratorConfig) -> Result<()> {
    for (i, m) in memories.iter().enumerate() {
        if m.id.is_empty() || m.id.len() > MAX_ID_BYTES {
            return Err(invalid(format!("memories[{i}].id"), format!("must be 1 to {MAX_ID_BYTES} bytes")));
        }
        if m.text.trim().is_empty() {
            return Err(invalid(format!("memories[{i}].text"), "is empty"));
        }
        if m.text.len() > config.max_memory_bytes {
            return Err(invalid(format!("memories[{i}].text"), format!("{} bytes exceed the limit of {}", m.text.len(), config.max_memory_bytes)));
        }
    }
    Ok(())
}

/// The deadline a client set with the `grpc-timeout` header, if any.
pub fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    };
    std::time::Instant::now().checked_add(d)
}
