//! Prompt building: memories become passages appended to the system message (the request's
//! own, or a new one led by the configured instruction), rendered through the model's chat
//! template. The prompt is tokenised in segments: the text before the passages, each
//! passage (`"\n\n"` + its text, see [`memory_segment`]) on its own, and the text after them.
//! Both attend modes use exactly these tokens, so a memory's tokens do not depend on its
//! neighbours and its states can be computed alone and cached (`fused` mode), and each
//! memory's token span is known exactly (attention attribution).

use memgpt_models::text::chat::{ChatMessage, ChatTemplate};
use memgpt_models::text::tokenizer::TextTokenizer;

use crate::engine::extract::MemoryTokens;
use crate::error::{GeneratorError, Result};

/// Where the passages go in the rendered template; the system message comes first, so its
/// first occurrence is this one.
const SLOT: &str = "\u{E000}memgpt-memories\u{E001}";

/// A tokenised prompt with the token span `[start, end)` of each memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Token ids, BOS included when the model uses one.
    pub tokens: Vec<u32>,
    /// Token span of each memory's segment, in request order; contiguous, from
    /// `memory_start` to `memory_end`.
    pub spans: Vec<(i64, i64)>,
    /// First token of the first memory (the end of the prefix before the passages).
    pub memory_start: usize,
    /// First token after the last memory.
    pub memory_end: usize,
}

/// The tokens a memory takes in a prompt: a blank line, then its text.
pub fn memory_segment(tokenizer: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer.encode(&format!("\n\n{text}"))?)
}

/// Builds the prompt of `messages` with `memories` placed as passages in the system message.
pub fn build(
    tokenizer: &TextTokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    memories: &[String],
    instruction: &str,
) -> Result<Prompt> {
    let mut tokens: Vec<u32> = tokenizer.bos.into_iter().collect();
    if memories.is_empty() {
        tokens.extend(tokenizer.encode(&template.render(messages)?)?);
        let end = tokens.len();
        return Ok(Prompt { tokens, spans: Vec::new(), memory_start: end, memory_end: end });
    }
    let mut messages = messages.to_vec();
    match messages.first_mut() {
        Some(m) if m.role == "system" => m.content.push_str(SLOT),
        _ => messages.insert(0, ChatMessage::new("system", &format!("{instruction}{SLOT}"))),
    }
    let text = template.render(&messages)?;
    let at = text.find(SLOT).ok_or_else(|| GeneratorError::Internal("the chat template dropped the system message".into()))?;
    tokens.extend(tokenizer.encode(&text[..at])?);
    let memory_start = tokens.len();
    let mut spans = Vec::with_capacity(memories.len());
    for memory in memories {
        let start = tokens.len() as i64;
        tokens.extend(memory_segment(tokenizer, memory)?);
        spans.push((start, tokens.len() as i64));
    }
    let memory_end = tokens.len();
    tokens.extend(tokenizer.encode(&text[at + SLOT.len()..])?);
    Ok(Prompt { tokens, spans, memory_start, memory_end })
}

/// How the assistant's turn of an extractive answer begins: the answer is asked for as a
/// quotation, which ends at its closing quotation mark (or EOS).
pub const QUOTE_LEAD: &str = "The answer is \"";

/// The lead-in's tokens, appended to the prompt of an extractive answer.
pub fn quote_lead(tokenizer: &TextTokenizer) -> Result<Vec<u32>> {
    Ok(tokenizer.encode(QUOTE_LEAD)?)
}

/// Each memory's tokens as `prompt` holds them, its leading blank line left out, with the
/// byte range of the memory's text each token covers (for extractive answers' offsets).
pub fn memory_tokens(tokenizer: &TextTokenizer, memories: &[String], prompt: &Prompt) -> Result<Vec<MemoryTokens>> {
    let mut out = Vec::with_capacity(memories.len());
    for (text, &(a, b)) in memories.iter().zip(&prompt.spans) {
        let segment = format!("\n\n{text}");
        let (ids, offsets) = tokenizer.encode_with_offsets(&segment)?;
        if ids[..] != prompt.tokens[a as usize..b as usize] {
            return Err(GeneratorError::Internal("a memory's tokens differ from its tokens in the prompt".into()));
        }
        // Tokens of the blank line come first; the first token reaching into the text starts it.
        let first = offsets.iter().position(|&(_, end)| end > 2).unwrap_or(ids.len());
        let offsets = offsets[first..].iter().map(|&(s, e)| (s.saturating_sub(2), e.saturating_sub(2))).collect();
        out.push(MemoryTokens { text: text.clone(), tokens: ids[first..].to_vec(), offsets, avoided: Vec::new(), breaks: Vec::new() });
    }
    Ok(out)
}

/// The tokens before the memories of a prompt whose system message is `system` (empty: none,
/// so `instruction` leads a new one), as [`build`] makes them.
pub fn prefix(tokenizer: &TextTokenizer, template: &ChatTemplate, system: &str, instruction: &str) -> Result<Vec<u32>> {
    let mut messages = Vec::new();
    if !system.is_empty() {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", "?"));
    let built = build(tokenizer, template, &messages, &["?".to_string()], instruction)?;
    Ok(built.tokens[..built.memory_start].to_vec())
}
