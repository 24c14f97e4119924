//! Documents split into chunks bounded by the encoder's token limit, consecutive chunks
//! sharing `overlap` tokens; each chunk is a slice of the original text.

use memgpt_models::text::tokenizer::TextTokenizer;

use crate::error::{GatewayError, Result};

/// Special tokens the encoder adds around every text ([CLS] and [SEP]).
const SPECIAL: usize = 2;

/// Splits `text` into chunks of at most `max_tokens` encoder tokens (special tokens included).
pub fn split(tokenizer: &TextTokenizer, text: &str, max_tokens: usize, overlap: usize) -> Result<Vec<String>> {
    let window = max_tokens.saturating_sub(SPECIAL);
    if window == 0 || overlap >= window {
        return Err(GatewayError::Internal(format!("chunking needs max_tokens > {SPECIAL} + overlap (got {max_tokens}, {overlap})")));
    }
    let (_, offsets) = tokenizer.encode_with_offsets(text)?;
    let n = offsets.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + window).min(n);
        let (a, b) = (offsets[start].0, offsets[end - 1].1);
        chunks.push(text.get(a..b).unwrap_or_default().to_string());
        if end == n {
            return Ok(chunks);
        }
        start = end - overlap;
    }
}
