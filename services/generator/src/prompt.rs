//! Prompt building for the `concat` attend mode: memories become numbered passages in a system
//! message, rendered through the model's own chat template, and each memory's token span is
//! found from the tokeniser's offsets (for attention attribution).

use memgpt_models::chat::{ChatMessage, ChatTemplate};
use memgpt_models::tokenizer::TextTokenizer;

use crate::error::Result;

/// A tokenised prompt with the token span `[start, end)` of each memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Token ids, BOS included when the model uses one.
    pub tokens: Vec<u32>,
    /// Token span of each memory, in request order (empty when not found).
    pub spans: Vec<(i64, i64)>,
}

/// Builds the prompt of `messages` with `memories` placed as passages in the system message
/// (appended to the request's own system message, or in a new one led by `instruction`).
pub fn build(
    tokenizer: &TextTokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    memories: &[String],
    instruction: &str,
) -> Result<Prompt> {
    let mut messages = messages.to_vec();
    let mut passages = Vec::with_capacity(memories.len());
    if !memories.is_empty() {
        let mut block = String::from("\n\n");
        for (i, text) in memories.iter().enumerate() {
            block.push_str(&format!("[{}] ", i + 1));
            passages.push(block.len()..block.len() + text.len());
            block.push_str(text);
            block.push_str("\n\n");
        }
        let block = block.trim_end().to_string();
        match messages.first_mut() {
            Some(m) if m.role == "system" => {
                let base = m.content.len();
                passages.iter_mut().for_each(|r| *r = r.start + base..r.end + base);
                m.content.push_str(&block);
            }
            _ => {
                let base = instruction.len();
                passages.iter_mut().for_each(|r| *r = r.start + base..r.end + base);
                messages.insert(0, ChatMessage::new("system", &format!("{instruction}{block}")));
            }
        }
    }
    let text = template.render(&messages)?;
    // Where the system content landed in the rendered text (templates only wrap it).
    let content_at = messages.first().filter(|_| !memories.is_empty()).and_then(|m| text.find(m.content.as_str()));
    let (ids, offsets) = tokenizer.encode_with_offsets(&text)?;
    let shift = usize::from(tokenizer.bos.is_some());
    let mut tokens: Vec<u32> = tokenizer.bos.into_iter().collect();
    tokens.extend(ids);
    let spans = passages
        .iter()
        .map(|range| match content_at {
            Some(at) => {
                let (a, b) = (at + range.start, at + range.end);
                let inside: Vec<usize> = offsets.iter().enumerate().filter(|(_, &(s, e))| s < b && e > a).map(|(i, _)| i).collect();
                match (inside.first(), inside.last()) {
                    (Some(&first), Some(&last)) => ((first + shift) as i64, (last + 1 + shift) as i64),
                    _ => (0, 0),
                }
            }
            None => (0, 0),
        })
        .collect();
    Ok(Prompt { tokens, spans })
}
