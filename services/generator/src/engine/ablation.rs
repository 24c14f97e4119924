//! Leave-one-out attribution (ContextCite's ablation, one memory at a time): for each memory,
//! the answer's log-likelihood is computed again with that memory's tokens left out of the
//! prompt, and its score is how much the answer's log-likelihood drops without it. The
//! states before the left-out memory are the sequence's own (copied); the rest of the prompt
//! and the answer are computed again, every memory's pass in the same ragged steps. Cost: one
//! prefill of the prompt after each memory, and one step per answer token, batched over the
//! memories; the answer is capped at [`MAX_TOKENS`].

use memgpt_models::llama::kv::KvCache;
use memgpt_models::llama::ragged::SeqStep;
use memgpt_models::llama::Llama;
use tch::{Device, Kind};

/// Answer tokens scored (the rest of a long answer is left out of every pass alike).
pub(super) const MAX_TOKENS: usize = 48;

/// Log-probability of `token` under one row of logits.
pub(super) fn log_prob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits.get(token as usize).map_or(f64::NEG_INFINITY, |&l| l as f64 - max - sum.ln())
}

/// Per memory (`spans` of `prompt`), the answer's log-likelihood `full` minus that with the
/// memory left out; `cache` holds the sequence's states of at least the prompt.
pub(super) fn scores(model: &Llama, prompt: &[u32], spans: &[(i64, i64)], cache: &KvCache, answer: &[u32], full: f64) -> memgpt_models::Result<Vec<f32>> {
    let answer = &answer[..answer.len().min(MAX_TOKENS)];
    if spans.is_empty() || answer.is_empty() {
        return Ok(vec![0.0; spans.len()]);
    }
    let c = &model.config;
    let mut caches = Vec::with_capacity(spans.len());
    let mut tails = Vec::with_capacity(spans.len());
    for &(a, b) in spans {
        let tail = &prompt[b as usize..];
        let capacity = a + (tail.len() + answer.len()) as i64;
        let mut fresh = KvCache::uninit(c.n_layer, 1, c.n_head_kv, capacity, c.head_dim, model.kind, model.device);
        if a > 0 {
            let (k, v) = cache.read(0, a);
            fresh.write(0, &k, &v);
        }
        caches.push(fresh);
        tails.push(tail);
    }
    let mut loglik = vec![0.0f64; spans.len()];
    for t in 0..answer.len() {
        let inputs: Vec<&[u32]> = if t == 0 { tails.clone() } else { vec![&answer[t - 1..t]; spans.len()] };
        let mut steps: Vec<SeqStep<'_>> =
            caches.iter_mut().zip(&inputs).map(|(cache, tokens)| SeqStep::new(tokens, cache)).collect();
        let out = model.forward_ragged(&mut steps, 1)?;
        let logits: Vec<f32> = Vec::try_from(out.logits.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let vocab = logits.len() / spans.len();
        for (j, ll) in loglik.iter_mut().enumerate() {
            *ll += log_prob(&logits[j * vocab..(j + 1) * vocab], answer[t]);
        }
    }
    Ok(loglik.into_iter().map(|ll| (full - ll) as f32).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_prob_is_a_log_softmax() {
        let lp = super::log_prob(&[1.0, 2.0, 3.0], 2);
        let expected = 3.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((lp - expected).abs() < 1e-6);
    }
}
