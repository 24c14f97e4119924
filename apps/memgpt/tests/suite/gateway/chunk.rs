//! Chunking with the real encoder tokeniser: chunks respect the token limit and the overlap,
//! and cover the text.

use memgpt_gateway::chunk::split;
use memgpt_models::text::tokenizer::TextTokenizer;

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
