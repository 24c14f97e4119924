//! The ragged step against the plain forward: several sequences (fresh prompts, a chunked
//! prompt, decode tokens) in one step give each the logits it gets alone, and span shares are
//! probabilities. Calibrated attention to memories against its definition.

use memgpt_models::llama::decoder::Decoder;
use memgpt_models::llama::kv::KvCache;
use memgpt_models::llama::ragged::{Calibrate, SeqStep};
use tch::{Device, Kind, Tensor};

use crate::common::{decoder, max_diff};

fn cache(d: &Decoder, capacity: i64) -> KvCache {
    let c = &d.model.config;
    KvCache::uninit(c.n_layer, 1, c.n_head_kv, capacity, c.head_dim, Kind::Float, Device::Cpu)
}

fn alone(d: &Decoder, tokens: &[u32]) -> Tensor {
    let mut kv = cache(d, 64);
    let mut step = [SeqStep::new(tokens, &mut kv)];
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
        let mut step = [SeqStep::new(&a, &mut ka), SeqStep::new(&b[..split], &mut kb)];
        let out = d.model.forward_ragged(&mut step, 1).unwrap();
        assert!(max_diff(&out.logits.get(0), &reference) < 1e-4);
    }
    let next = u32::try_from(reference.argmax(-1, false).int64_value(&[])).unwrap();
    let spans = [(0i64, 2i64), (2, 4)];
    let mut step = [
        SeqStep { tokens: &[next], cache: &mut ka, spans: &spans, positions: None, select: None, score: None, calibrate: None },
        SeqStep::new(&b[split..], &mut kb),
        SeqStep { tokens: &c, cache: &mut kc, spans: &[(0, 1)], positions: None, select: None, score: None, calibrate: None },
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
    let mut step = [SeqStep { tokens: &[1, 2, 3], cache: &mut kv, spans: &[], positions: None, select: None, score: None, calibrate: None }];
    assert!(d.model.forward_ragged(&mut step, 1).is_err());
    let mut step = [SeqStep::new(&[], &mut kv)];
    assert!(d.model.forward_ragged(&mut step, 1).is_err());
}

/// The logits of `tokens` stepped after what `kv` holds, with `calibrate`.
fn after(d: &Decoder, kv: &mut KvCache, tokens: &[u32], calibrate: Option<Calibrate>) -> Tensor {
    let mut step = [SeqStep { calibrate, ..SeqStep::new(tokens, kv) }];
    d.model.forward_ragged(&mut step, 1).unwrap().logits.get(0)
}

/// A temperature on the memory keys' logits is the same as those keys divided by it in the
/// cache; a scale on every key a row sees changes nothing (the softmax normalises it away),
/// on some of them it does; rows before `from` attend exactly; 1 and 1 is exact attention.
#[test]
fn calibrated_attention_divides_memory_logits_and_scales_their_share() {
    let _guard = tch::no_grad_guard();
    let d = decoder();
    let prompt = d.tokenizer.encode("Passage: the ferry to Port Carrow leaves at 7:15 from pier 4.").unwrap();
    let question = d.tokenizer.encode(" Question: when does the ferry leave?").unwrap();
    let (a, b) = (2i64, prompt.len() as i64);
    let n = prompt.len() as i64;
    let filled = |temperature: Option<f64>| {
        let mut kv = cache(&d, 64);
        let mut step = [SeqStep::new(&prompt, &mut kv)];
        d.model.forward_ragged(&mut step, 1).unwrap();
        if let Some(t) = temperature {
            let (keys, values) = kv.read(a, b - a);
            let keys: Vec<Tensor> = keys.iter().map(|k| k / t).collect();
            kv.write(a, &keys, &values);
        }
        kv
    };
    let cal = |temperature: f32, scale: f32, keys: (i64, i64), from: i64| Some(Calibrate { keys, from, temperature, scale });
    let exact = after(&d, &mut filled(None), &question, None);
    assert!(max_diff(&exact, &after(&d, &mut filled(None), &question, cal(1.0, 1.0, (a, b), n))) < 1e-6);
    // Temperature: the question's logits on the memory keys divided by 1.7.
    let reference = after(&d, &mut filled(Some(1.7)), &question, None);
    let tempered = after(&d, &mut filled(None), &question, cal(1.7, 1.0, (a, b), n));
    assert!(max_diff(&reference, &tempered) < 1e-4, "{}", max_diff(&reference, &tempered));
    assert!(max_diff(&exact, &tempered) > 1e-3);
    // Scale on every key: normalised away; on the memory keys only: it changes the answer.
    assert!(max_diff(&exact, &after(&d, &mut filled(None), &question, cal(1.0, 2.5, (0, n + question.len() as i64), n))) < 1e-4);
    assert!(max_diff(&exact, &after(&d, &mut filled(None), &question, cal(1.0, 2.5, (a, b), n))) > 1e-3);
    // Rows before `from` attend exactly: calibrating only the last question token gives what
    // the reference gives when the cache is tempered for that token alone.
    let head = question.len() - 1;
    let mut tempered_kv = filled(None);
    let _ = after(&d, &mut tempered_kv, &question[..head], None);
    let (keys, values) = tempered_kv.read(a, b - a);
    tempered_kv.write(a, &keys.iter().map(|k| k / 1.7).collect::<Vec<_>>(), &values);
    let reference = after(&d, &mut tempered_kv, &question[head..], None);
    let mut whole = filled(None);
    let split = after(&d, &mut whole, &question, cal(1.7, 1.0, (a, b), n + head as i64));
    assert!(max_diff(&reference, &split) < 1e-4, "{}", max_diff(&reference, &split));
}
