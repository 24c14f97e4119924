//! Reference checks against sentence-transformers and transformers (data made once by
//! `reference/make_reference.py`): encoder cosine >= 0.9999 on 50 texts; decoder greedy
//! continuations token for token and first-step logits within 1e-3.

use std::path::PathBuf;

use memgpt_models::encoder::bert::{Bert, Precision};
use memgpt_models::text::chat::ChatMessage;
use memgpt_models::llama::decoder::Decoder;
use serde_json::Value;
use tch::{Device, Kind};

use crate::common::models;

fn reference(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn encoder_matches_sentence_transformers() {
    let data = reference("encoder.json");
    let texts: Vec<String> = data["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let expected: Vec<Vec<f32>> = data["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let bert = Bert::load(&models().join(memgpt_models::DEFAULT_ENCODER), Device::Cpu, Precision::F32).unwrap();
    // Batched (with padding) and one by one must both agree with the reference.
    for batch in [16, 1] {
        let got = bert.embed(&texts, batch).unwrap();
        let mut worst = (1.0f32, 0usize);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let cos: f32 = g.iter().zip(e).map(|(a, b)| a * b).sum::<f32>()
                / (g.iter().map(|a| a * a).sum::<f32>().sqrt() * e.iter().map(|b| b * b).sum::<f32>().sqrt());
            if cos < worst.0 {
                worst = (cos, i);
            }
        }
        assert!(worst.0 >= 0.9999, "batch {batch}: cosine {} on text {} ({:?})", worst.0, worst.1, &texts[worst.1].chars().take(40).collect::<String>());
    }
}

#[test]
fn bf16_encoder_stays_close_to_f32() {
    let data = reference("encoder.json");
    let texts: Vec<String> = data["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let dir = models().join(memgpt_models::DEFAULT_ENCODER);
    let f32m = Bert::load(&dir, Device::Cpu, Precision::F32).unwrap().embed(&texts, 16).unwrap();
    let bf16 = Bert::load(&dir, Device::Cpu, Precision::Bf16).unwrap().embed(&texts, 16).unwrap();
    for (a, b) in f32m.iter().zip(&bf16) {
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.99, "bf16 drifted: cosine {cos}");
    }
}

#[test]
fn decoder_matches_transformers_greedy_and_logits() {
    let data = reference("decoder.json");
    let decoder = Decoder::load(&models().join(memgpt_models::DEFAULT_DECODER), Device::Cpu, Kind::Float).unwrap();
    let max_new = data["max_new_tokens"].as_u64().unwrap() as usize;
    for case in data["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = decoder.chat_prompt(&[ChatMessage::new("user", prompt)]).unwrap();
        let expected_prompt: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, expected_prompt, "prompt tokens of {prompt:?}");

        let (got, first) = decoder.greedy(&ids, max_new).unwrap();
        let expected: Vec<u32> = case["greedy_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        // The reference runs all 32 steps; ours stops after an end-of-sequence token.
        assert_eq!(got[..], expected[..got.len()], "greedy continuation of {prompt:?}");
        if got.len() < max_new {
            assert!(decoder.tokenizer.eos.contains(got.last().unwrap()), "stopped early without EOS");
        }

        let top_ids = case["top_logit_ids"].as_array().unwrap();
        let top = case["top_logits"].as_array().unwrap();
        for (id, value) in top_ids.iter().zip(top) {
            let ours = first.double_value(&[id.as_i64().unwrap()]);
            let theirs = value.as_f64().unwrap();
            assert!((ours - theirs).abs() < 1e-3, "{prompt:?}: logit of token {id}: {ours} vs {theirs}");
        }
    }
}

#[test]
fn batched_greedy_equals_one_by_one() {
    let decoder = Decoder::load(&models().join(memgpt_models::DEFAULT_DECODER), Device::Cpu, Kind::Float).unwrap();
    let prompts: Vec<Vec<u32>> = ["Hi", "What is the largest planet in the solar system?", "Count to five."]
        .iter()
        .map(|p| decoder.chat_prompt(&[ChatMessage::new("user", p)]).unwrap())
        .collect();
    let (batched, _) = decoder.greedy_batch(&prompts, 12).unwrap();
    for (prompt, got) in prompts.iter().zip(&batched) {
        let (alone, _) = decoder.greedy(prompt, 12).unwrap();
        assert_eq!(&alone, got, "left padding changed the output");
    }
}

#[test]
fn block_products_agree_with_the_dequantised_weights() {
    // Decoding steps multiply a few rows, which read the GGUF's Q4_1/Q8_0 blocks; turned off,
    // the same steps multiply the dequantised f32 weights. Only the order of sums differs.
    let mut decoder = Decoder::load(&models().join(memgpt_models::DEFAULT_DECODER), Device::Cpu, Kind::Float).unwrap();
    assert!(decoder.model.block_bytes() > 0, "the default GGUF keeps its blocks");
    let prompts: Vec<Vec<u32>> = ["Hi", "Name three colours.", "What is the capital of France?"]
        .iter()
        .map(|p| decoder.chat_prompt(&[ChatMessage::new("user", p)]).unwrap())
        .collect();
    let (with_blocks, logits_blocks) = decoder.greedy_batch(&prompts, 16).unwrap();
    let (one, one_logits) = decoder.greedy(&prompts[1], 16).unwrap();
    decoder.model.set_block_rows(0);
    let (plain, logits_plain) = decoder.greedy_batch(&prompts, 16).unwrap();
    let (one_plain, one_logits_plain) = decoder.greedy(&prompts[1], 16).unwrap();
    assert_eq!(with_blocks, plain, "greedy tokens of 3 streams");
    assert_eq!(one, one_plain, "greedy tokens of one stream");
    for (a, b) in [(&logits_blocks, &logits_plain), (&one_logits, &one_logits_plain)] {
        let diff = (a - b).abs().max().double_value(&[]);
        let scale = b.abs().max().double_value(&[]);
        assert!(diff <= 1e-4 * scale, "first-step logits differ by {diff} (largest logit {scale})");
    }
}
