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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> TextTokenizer {
        let dir = memgpt_models::models_dir(std::env::var_os("MEMGPT_MODELS_DIR").map(Into::into)).join(memgpt_models::DEFAULT_ENCODER);
        TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap().without_truncation().unwrap()
    }

    #[test]
    fn chunks_respect_the_limit_overlap_and_cover_the_text() {
        let t = tokenizer();
        let text: String = (0..400).map(|i| format!("Sentence number {i} says something. ")).collect();
        let chunks = split(&t, &text, 64, 8).unwrap();
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert!(t.encode(c).unwrap().len() <= 62, "chunk too long: {c:?}");
            assert!(text.contains(c.as_str()));
        }
        assert!(text.starts_with(&chunks[0]) && text.trim_end().ends_with(chunks.last().unwrap().as_str()));
        // Consecutive chunks overlap.
        let tail: String = chunks[0].split_whitespace().last().unwrap().to_string();
        assert!(chunks[1].contains(&tail));
        assert_eq!(split(&t, "short text", 64, 8).unwrap(), vec!["short text".to_string()]);
        assert!(split(&t, "   ", 64, 8).unwrap().is_empty());
    }
}
