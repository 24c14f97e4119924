//! The ragged step against the plain forward: several sequences (fresh prompts, a chunked
//! prompt, decode tokens) in one step give each the logits it gets alone, and span shares are
//! probabilities.

use memgpt_models::llama::decoder::Decoder;
use memgpt_models::llama::kv::KvCache;
use memgpt_models::llama::ragged::SeqStep;
use tch::{Device, Kind, Tensor};

use crate::common::{decoder, max_diff};

fn cache(d: &Decoder, capacity: i64) -> KvCache {
    let c = &d.model.config;
    KvCache::uninit(c.n_layer, 1, c.n_head_kv, capacity, c.head_dim, Kind::Float, Device::Cpu)
}

fn alone(d: &Decoder, tokens: &[u32]) -> Tensor {
    let mut kv = cache(d, 64);
    let mut step = [SeqStep { tokens, cache: &mut kv, spans: &[], positions: None, select: None, score: None }];
    d.model.forward_ragged(&mut step, 1).unwrap().logits.get(0)
}

#[test]
fn ragged_step_matches_each_sequence_alone() {
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let a = d.tokenizer.encode("The capital of France is").unwrap();
    let b = d.tokenizer.encode("Water boils at a temperature of one hundred").unwrap();
    let c = d.tokenizer.encode("Once upon a time").unwrap();
    // The plain forward agrees with the ragged one for a single prompt.
    let mut plain = d.model.new_cache(1, 64);
    let ids = Tensor::from_slice(&a.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, -1]);
    let pos = Tensor::arange(a.len() as i64, (Kind::Int64, Device::Cpu)).view([1, -1]);
    let reference = d.model.forward(&ids, &pos, &mut plain, None).unwrap().get(0);
    assert!(max_diff(&reference, &alone(&d, &a)) < 1e-4);

    // b is prefilled in two chunks (the second one masked causally after a past), c in one
    // step together with b's second chunk and a's decode token.
    let (mut ka, mut kb, mut kc) = (cache(&d, 64), cache(&d, 64), cache(&d, 64));
    let split = b.len() / 2;
    {
        let mut step = [SeqStep { tokens: &a, cache: &mut ka, spans: &[], positions: None, select: None, score: None }, SeqStep { tokens: &b[..split], cache: &mut kb, spans: &[], positions: None, select: None, score: None }];
        let out = d.model.forward_ragged(&mut step, 1).unwrap();
        assert!(max_diff(&out.logits.get(0), &reference) < 1e-4);
    }
    let next = u32::try_from(reference.argmax(-1, false).int64_value(&[])).unwrap();
    let spans = [(0i64, 2i64), (2, 4)];
    let mut step = [
        SeqStep { tokens: &[next], cache: &mut ka, spans: &spans, positions: None, select: None, score: None },
        SeqStep { tokens: &b[split..], cache: &mut kb, spans: &[], positions: None, select: None, score: None },
        SeqStep { tokens: &c, cache: &mut kc, spans: &[(0, 1)], positions: None, select: None, score: None },
    ];
    let out = d.model.forward_ragged(&mut step, 4).unwrap();
    let mut a_next = a.clone();
    a_next.push(next);
    assert!(max_diff(&out.logits.get(0), &alone(&d, &a_next)) < 1e-4);
    assert!(max_diff(&out.logits.get(1), &alone(&d, &b)) < 1e-4);
    assert!(max_diff(&out.logits.get(2), &alone(&d, &c)) < 1e-4);
    assert_eq!(ka.len() as usize, a.len() + 1);
    assert_eq!(kb.len() as usize, b.len());
    let total: f32 = out.shares[0].iter().sum();
    assert!(out.shares[0].iter().all(|s| (0.0..=1.0).contains(s)) && total <= 1.0 + 1e-5, "{:?}", out.shares[0]);
    assert!(out.shares[1].is_empty());
    // The first token of a sequence soaks up much attention (the attention sink).
    assert!(out.shares[2][0] > 0.0 && out.shares[2][0] <= 1.0 + 1e-5);
}

#[test]
fn ragged_step_refuses_overflow_and_empty_sequences() {
    let d = decoder();
    let mut kv = cache(&d, 2);
    let mut step = [SeqStep { tokens: &[1, 2, 3], cache: &mut kv, spans: &[], positions: None, select: None, score: None }];
    assert!(d.model.forward_ragged(&mut step, 1).is_err());
    let mut step = [SeqStep { tokens: &[], cache: &mut kv, spans: &[], positions: None, select: None, score: None }];
    assert!(d.model.forward_ragged(&mut step, 1).is_err());
}
