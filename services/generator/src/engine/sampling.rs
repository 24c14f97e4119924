//! Token sampling from one row of logits: repetition penalty, then greedy (temperature 0) or
//! temperature, top-k and top-p with a seeded generator, so that the same seed and prompt give
//! the same output whatever else is in the batch.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Resolved sampling parameters (request values, or the configured defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0: greedy.
    pub temperature: f32,
    /// In (0, 1]; 1: no nucleus cut.
    pub top_p: f32,
    /// 0: no limit.
    pub top_k: usize,
    /// > 0; 1: none.
    pub repetition_penalty: f32,
    /// Random seed.
    pub seed: u64,
}

/// A sampler for one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Tokens seen so far (prompt and generated), for the repetition penalty.
    seen: Vec<bool>,
}

impl Sampler {
    /// A sampler over a vocabulary of `vocab` tokens that has seen `prompt`.
    pub fn new(params: SamplingParams, vocab: usize, prompt: &[u32]) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        let mut seen = vec![false; if params.repetition_penalty != 1.0 { vocab } else { 0 }];
        for &t in prompt {
            if let Some(s) = seen.get_mut(t as usize) {
                *s = true;
            }
        }
        Self { params, rng, seen }
    }

    /// Picks the next token from `logits` (modified in place) and records it as seen.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            // As in CTRL and transformers: shrink positive logits, grow negative ones.
            for (l, &s) in logits.iter_mut().zip(&self.seen) {
                if s {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        let token = if p.temperature <= 0.0 { argmax(logits) } else { self.draw(logits) };
        if let Some(s) = self.seen.get_mut(token as usize) {
            *s = true;
        }
        token
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, l / p.temperature)).collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < candidates.len() {
            candidates.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            candidates.truncate(p.top_k);
        }
        candidates.sort_unstable_by(by_logit_desc);
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut mass = 0.0;
            for (i, &x) in probs.iter().enumerate() {
                mass += x;
                if mass >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.gen::<f32>() * kept;
        for (i, &x) in probs[..keep].iter().enumerate() {
            if r < x {
                return candidates[i].0;
            }
            r -= x;
        }
        candidates[keep - 1].0
    }
}

/// Index of the largest logit (the first one on ties, as torch's argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams { temperature, top_p, top_k, repetition_penalty: 1.0, seed }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(params(0.0, 0, 1.0, 0), 4, &[]);
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_limits_the_choice() {
        let logits = [1.0f32, 0.9, 0.8, 0.7, 0.6, 0.5];
        let run = |seed| {
            let mut s = Sampler::new(params(1.0, 2, 1.0, seed), 6, &[]);
            (0..50).map(|_| s.sample(&mut logits.clone())).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().all(|&t| t < 2));
        assert!(run(7).contains(&0) && run(7).contains(&1));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Token 0 holds about 0.9 of the mass; top_p 0.5 leaves only it.
        let logits = [5.0f32, 1.0, 1.0, 1.0];
        let mut s = Sampler::new(params(1.0, 0, 0.5, 3), 4, &[]);
        assert!((0..100).all(|_| s.sample(&mut logits.clone()) == 0));
    }

    #[test]
    fn repetition_penalty_moves_away_from_seen_tokens() {
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..params(0.0, 0, 1.0, 0) }, 3, &[0]);
        // 2.0 / 2 = 1.0 < 1.5: the unseen token wins.
        assert_eq!(s.sample(&mut [2.0, 1.5, -1.0]), 1);
        // Now token 1 is seen too: 1.0 vs 0.75 vs -1.
        assert_eq!(s.sample(&mut [2.0, 1.5, -1.0]), 0);
    }
}
