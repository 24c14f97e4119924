//! Memory-KV fusion exactness: a memory's keys computed alone from position 0 and rotated by
//! an offset equal the keys computed directly at the shifted positions; values do not move;
//! and the fused plan covers exactly what must be computed.

use memgpt_models::llama::fused::fused_plan;
use tch::{Device, Kind, Tensor};

use crate::common::{decoder, max_diff};

#[test]
fn rotated_keys_equal_keys_computed_at_the_target_position() {
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let tokens = d.tokenizer.encode("\n\nThe Harbour Point lighthouse was electrified in 1931; its last keeper left in 1989.").unwrap();
    let memory = d.model.memory_kv(&[&tokens]).unwrap().remove(0);
    assert_eq!(memory.len(), tokens.len() as i64);
    let ids = Tensor::from_slice(&tokens.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, -1]);
    for offset in [1i64, 37, 500, 3000] {
        let mut direct = d.model.new_cache(1, tokens.len() as i64);
        let pos = Tensor::arange_start(offset, offset + tokens.len() as i64, (Kind::Int64, Device::Cpu)).view([1, -1]);
        let _ = d.model.forward(&ids, &pos, &mut direct, None).unwrap();
        // Layer 0: the keys are the rotation alone, so they must agree to f32 precision.
        let rotated = d.model.rotate_keys(&memory.keys[0], offset);
        let err = max_diff(&rotated, &direct.keys(0));
        let scale = direct.keys(0).abs().max().double_value(&[]);
        println!("offset {offset}: layer 0 max |rotated - direct| = {err:.3e} (max |key| {scale:.2})");
        assert!(err <= 1e-5, "offset {offset}: layer 0 keys differ by {err:e}");
        // Every layer: the same up to the float noise of the attention above (relative
        // positions are unchanged, so the hidden states are the same function).
        for layer in 0..direct.layers() {
            let rotated = d.model.rotate_keys(&memory.keys[layer], offset);
            let err = max_diff(&rotated, &direct.keys(layer));
            assert!(err <= 1e-3, "offset {offset}: layer {layer} keys differ by {err:e}");
            let err = max_diff(&memory.values[layer], &direct.values(layer));
            assert!(err <= 1e-3, "offset {offset}: layer {layer} values differ by {err:e}");
        }
    }
}

#[test]
fn states_computed_after_a_prefix_are_exact_where_the_prefix_really_precedes_them() {
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let prefix = d.tokenizer.encode("<|im_start|>system\nAnswer from the passages below.").unwrap();
    let memory = d.tokenizer.encode("\n\nThe ferry to Port Carrow leaves at 7:15 from pier 4.").unwrap();
    let mut whole = d.model.new_cache(1, 64);
    let both: Vec<u32> = prefix.iter().chain(&memory).copied().collect();
    let mut step = [memgpt_models::llama::ragged::SeqStep::new(&both, &mut whole)];
    d.model.forward_ragged(&mut step, 1).unwrap();
    let mut head = d.model.new_cache(1, 64);
    let mut step = [memgpt_models::llama::ragged::SeqStep::new(&prefix, &mut head)];
    d.model.forward_ragged(&mut step, 1).unwrap();
    let kv = d.model.memory_kv_after(&head, &[&memory]).unwrap().remove(0);
    assert_eq!(kv.base, prefix.len() as i64);
    // Laid in right after the prefix (a rotation by zero), the states are the ones a whole
    // prefill computes.
    let mut laid = d.model.new_cache(1, 64);
    d.model.place_memory(&mut laid, prefix.len() as i64, &kv).unwrap();
    laid.set_filled(both.len() as i64);
    for layer in 0..whole.layers() {
        let n = memory.len() as i64;
        let at = prefix.len() as i64;
        assert!(max_diff(&laid.keys(layer).narrow(2, at, n), &whole.keys(layer).narrow(2, at, n)) < 1e-4, "layer {layer} keys");
        assert!(max_diff(&laid.values(layer).narrow(2, at, n), &whole.values(layer).narrow(2, at, n)) < 1e-4, "layer {layer} values");
    }
}

#[test]
fn placing_a_memory_writes_rotated_keys_without_marking_them_filled() {
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let tokens = d.tokenizer.encode("\n\nA short memory.").unwrap();
    let memory = d.model.memory_kv(&[&tokens]).unwrap().remove(0);
    let mut cache = d.model.new_cache(1, 64);
    d.model.place_memory(&mut cache, 10, &memory).unwrap();
    assert_eq!(cache.len(), 0, "placing does not fill");
    cache.set_filled(10 + memory.len());
    let placed = cache.keys(0).narrow(2, 10, memory.len());
    assert!(max_diff(&placed, &d.model.rotate_keys(&memory.keys[0], 10)) < 1e-7);
    let err = d.model.place_memory(&mut cache, 60, &memory).unwrap_err().to_string();
    assert!(err.contains("capacity"), "{err}");
}

#[test]
fn fused_plan_computes_the_prefix_gap_each_memory_head_and_the_tail() {
    let spans = [(10, 30), (30, 60), (60, 65)];
    assert_eq!(fused_plan(0, &spans, 0, 65, 80), vec![(0, 10), (65, 80)]);
    assert_eq!(fused_plan(8, &spans, 0, 65, 80), vec![(8, 10), (65, 80)]);
    assert_eq!(fused_plan(10, &spans, 4, 65, 80), vec![(10, 14), (30, 34), (60, 64), (65, 80)]);
    // Recomputing every memory token is plain prefill.
    assert_eq!(fused_plan(0, &spans, 1000, 65, 80), vec![(0, 80)]);
    assert_eq!(fused_plan(0, &[], 4, 10, 12), vec![(0, 12)]);
}

#[test]
fn scattered_positions_recompute_tokens_in_place_around_laid_in_states() {
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let tokens = d.tokenizer.encode("The ferry to Port Carrow leaves at 7:15 every morning from pier 4, and the museum opens at ten.").unwrap();
    let n = tokens.len() as i64;
    let mut whole = d.model.new_cache(1, 64);
    let mut step = [memgpt_models::llama::ragged::SeqStep::new(&tokens, &mut whole)];
    let reference = d.model.forward_ragged(&mut step, 1).unwrap().logits;
    // Every state laid in, the first 5 filled; then positions 5, 6, 12, 13 and the last are
    // computed in one step, each attending to everything up to its own position.
    let (keys, values) = whole.read(0, n);
    let mut laid = d.model.new_cache(1, 64);
    laid.put(0, &keys, &values);
    laid.set_filled(5);
    let positions: Vec<i64> = vec![5, 6, 12, 13, n - 1];
    let picked: Vec<u32> = positions.iter().map(|&p| tokens[p as usize]).collect();
    let mut step = [memgpt_models::llama::ragged::SeqStep { tokens: &picked, cache: &mut laid, spans: &[(0, 5)], positions: Some(&positions), select: None, score: None, calibrate: None }];
    let out = d.model.forward_ragged(&mut step, 1).unwrap();
    assert_eq!(laid.len(), n);
    assert!(max_diff(&out.logits, &reference) < 1e-3, "logits differ by {}", max_diff(&out.logits, &reference));
    for layer in 0..laid.layers() {
        assert!(max_diff(&laid.keys(layer), &whole.keys(layer)) < 1e-3, "layer {layer} keys");
    }
    // Positions behind the filled part are refused.
    let mut step = [memgpt_models::llama::ragged::SeqStep { tokens: &picked[..1], cache: &mut laid, spans: &[], positions: Some(&[3]), select: None, score: None, calibrate: None }];
    assert!(d.model.forward_ragged(&mut step, 1).is_err());
}

#[test]
fn selective_recompute_drops_candidates_after_layer_one_and_keeps_the_most_deviating() {
    use memgpt_models::llama::ragged::{SeqStep, Select};
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let enc = |s: &str| d.tokenizer.encode(s).unwrap();
    let prefix = enc("<|im_start|>system\nAnswer from the passages below.");
    let memories = [enc("\n\nThe ferry to Port Carrow leaves at 7:15 from pier 4."), enc("\n\nThe museum on Kell Street opens at ten and closes at six, except on Mondays.")];
    let question = enc("<|im_end|>\n<|im_start|>user\nWhen does the museum open?<|im_end|>\n<|im_start|>assistant\n");
    let all: Vec<u32> = prefix.iter().chain(memories.iter().flatten()).chain(&question).copied().collect();
    let total = all.len() as i64;
    let mut whole = d.model.new_cache(1, 128);
    let reference = d.model.forward_ragged(&mut [SeqStep::new(&all, &mut whole)], 1).unwrap().logits;
    let mut head = d.model.new_cache(1, 128);
    d.model.forward_ragged(&mut [SeqStep::new(&prefix, &mut head)], 1).unwrap();
    let refs: Vec<&[u32]> = memories.iter().map(|m| m.as_slice()).collect();
    let states = d.model.memory_kv_after(&head, &refs).unwrap();
    let memory_start = prefix.len();
    let memory_end = memory_start + memories.iter().map(Vec::len).sum::<usize>();
    // Every position after the prefix is in the step; the memory tokens are candidates.
    let positions: Vec<i64> = (memory_start as i64..total).collect();
    let candidates: Vec<bool> = (memory_start..all.len()).map(|p| p < memory_end).collect();
    let run = |keep: Option<usize>| {
        let mut laid = d.model.new_cache(1, 128);
        let (k, v) = head.read(0, prefix.len() as i64);
        laid.put(0, &k, &v);
        laid.set_filled(prefix.len() as i64);
        let mut at = memory_start as i64;
        for s in &states {
            d.model.place_memory(&mut laid, at, s).unwrap();
            at += s.len();
        }
        let step = match keep {
            Some(keep) => SeqStep { tokens: &all[memory_start..], cache: &mut laid, spans: &[], positions: Some(&positions), select: Some(Select { candidates: &candidates, keep }), score: None, calibrate: None },
            // Nothing recomputed: only the question.
            None => SeqStep { tokens: &question, cache: &mut laid, spans: &[], positions: Some(&positions[memory_end - memory_start..]), select: None, score: None, calibrate: None },
        };
        let logits = d.model.forward_ragged(&mut [step], 1).unwrap().logits;
        assert_eq!(laid.len(), total);
        max_diff(&logits, &reference)
    };
    let n = memory_end - memory_start;
    let (exact, none, some) = (run(Some(n)), run(None), run(Some(n / 4)));
    println!("max logit error: keep all {exact:.2e}, keep a quarter {some:.3}, recompute none {none:.3}");
    assert!(exact < 1e-3, "keeping every candidate is plain prefill: {exact}");
    assert!(some < none, "recomputing the most deviating quarter ({some}) must beat recomputing none ({none})");
    let mut cache = d.model.new_cache(1, 128);
    let mut bad = [SeqStep { tokens: &all[memory_start..], cache: &mut cache, spans: &[], positions: Some(&positions), select: Some(Select { candidates: &candidates[1..], keep: 1 }), score: None, calibrate: None }];
    let err = d.model.forward_ragged(&mut bad, 1).err().expect("a flag per token is required").to_string();
    assert!(err.contains("select"), "{err}");
}

#[test]
fn scores_report_the_attention_the_question_puts_on_each_key() {
    use memgpt_models::llama::ragged::{Score, SeqStep, SCORE_LAYER};
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let tokens = d.tokenizer.encode("The ferry to Port Carrow leaves at 7:15 every morning from pier 4. When does the ferry leave?").unwrap();
    let n = tokens.len() as i64;
    let c = &d.model.config;
    let layers = (c.n_layer as usize - SCORE_LAYER) as f32;
    let heads = c.n_head as f32;
    // The last 3 tokens score every key: each row's attention sums to 1 per head and layer.
    let mut cache = d.model.new_cache(1, 64);
    let score = Some(Score { keys: (0, n), from: n - 3 });
    let mut step = [SeqStep { tokens: &tokens, cache: &mut cache, spans: &[(0, 8), (8, n)], positions: None, select: None, score, calibrate: None }];
    let out = d.model.forward_ragged(&mut step, (c.n_layer as usize) - SCORE_LAYER).unwrap();
    let scores = &out.scores[0];
    assert_eq!(scores.len(), n as usize);
    let total: f32 = scores.iter().sum();
    assert!((total - 3.0 * heads * layers).abs() < 1e-2, "total {total}, expected {}", 3.0 * heads * layers);
    // No row sees past itself: the last key is seen by the last row only.
    assert!(scores.iter().all(|&s| s >= 0.0));
    // The last row alone, over the same layers, is what the attention shares report.
    let mut cache = d.model.new_cache(1, 64);
    let score = Some(Score { keys: (0, 8), from: n - 1 });
    let mut step = [SeqStep { tokens: &tokens, cache: &mut cache, spans: &[(0, 8)], positions: None, select: None, score, calibrate: None }];
    let out = d.model.forward_ragged(&mut step, (c.n_layer as usize) - SCORE_LAYER).unwrap();
    let on_span: f32 = out.scores[0].iter().sum::<f32>() / heads / layers;
    assert!((on_span - out.shares[0][0]).abs() < 1e-3, "score {on_span} vs share {}", out.shares[0][0]);
    // Scattered positions (recomputed around laid-in states) score the same rows.
    let (keys, values) = cache.read(0, n);
    let mut laid = d.model.new_cache(1, 64);
    laid.put(0, &keys, &values);
    laid.set_filled(4);
    let positions = [4, 5, n - 1];
    let picked: Vec<u32> = positions.iter().map(|&p| tokens[p as usize]).collect();
    let score = Some(Score { keys: (0, 8), from: n - 1 });
    let mut step = [SeqStep { tokens: &picked, cache: &mut laid, spans: &[], positions: Some(&positions), select: None, score, calibrate: None }];
    let again: f32 = d.model.forward_ragged(&mut step, 1).unwrap().scores[0].iter().sum::<f32>() / heads / layers;
    assert!((again - on_span).abs() < 1e-3, "scattered {again} vs contiguous {on_span}");
}
