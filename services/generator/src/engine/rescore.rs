//! The query-driven selective recompute (fused mode, [`RecomputeRule::Query`]; ProphetKV,
//! A³, CacheClip). The memories' states are laid in and the question's tokens run once over
//! them, as with no recompute; that pass also scores every memory token by the attention the
//! question puts on it (summed over heads and over the layers from 2 on). The top share of
//! memory tokens, each widened to a window of [`WINDOW`] tokens either side, is then
//! recomputed through every layer with a strict causal mask over the final positions, and the
//! question after them: the answer starts from the second pass. The deviation rule spends
//! its budget on the tokens whose states moved most, whether the question reads them or not;
//! this one spends it where the question looks.
//!
//! The first memory is never a candidate: its states were computed right after the same
//! prefix, so they are exactly concat's.

use std::collections::VecDeque;

use memgpt_models::llama::ragged::Score;

use super::job::{Job, RecomputeRule};
use super::sequence::Pending;

/// Tokens either side of a selected token recomputed with it.
pub(super) const WINDOW: usize = 4;

/// A sequence's selective recompute while its first pass runs.
#[derive(Debug)]
pub(super) struct Rescore {
    /// Key positions that may be recomputed, `start..end` (the memories after the first).
    start: usize,
    end: usize,
    /// Where the question (everything after the memories) starts.
    tail: usize,
    ratio: f32,
    /// Attention each candidate position has received from the question so far.
    scores: Vec<f32>,
    /// Candidates the first pass computed anyway (each memory's head).
    heads: Vec<bool>,
    /// Memory positions of every memory laid in from the cache (all but each head); what the
    /// second pass does not recompute of them counts as reused once it is planned.
    laid: usize,
}

impl Rescore {
    /// The recompute of `job`, when it has one: fused, the query rule, a ratio above 0 and at
    /// least two memories; `head` leading tokens of each memory are computed in the first pass.
    pub(super) fn of(job: &Job, head: usize) -> Option<Self> {
        if !Self::applies(job) {
            return None;
        }
        let (start, end) = (job.spans[1].0 as usize, job.memory_end);
        let mut heads = vec![false; end - start];
        let whole = |i: usize| job.recompute_memories.get(i).copied().unwrap_or(false);
        for (i, &(a, b)) in job.spans.iter().enumerate().skip(1) {
            let (a, b) = (a as usize - start, b as usize - start);
            // A memory recomputed whole is computed in the first pass, like a head.
            heads[a..if whole(i) { b } else { b.min(a + head) }].fill(true);
        }
        let laid = job.spans.iter().enumerate().filter(|&(i, _)| !whole(i)).map(|(_, &(a, b))| ((b - a) as usize).saturating_sub(head)).sum();
        Some(Self { start, end, tail: job.memory_end, ratio: job.recompute_ratio, scores: vec![0.0; end - start], heads, laid })
    }

    /// Whether `job` has a query-rule recompute: fused, the query rule, a ratio above 0 and
    /// at least two memories.
    pub(super) fn applies(job: &Job) -> bool {
        job.fused && job.recompute_rule == RecomputeRule::Query && job.recompute_ratio > 0.0 && job.spans.len() >= 2
    }

    /// What the first pass reports.
    pub(super) fn score(&self) -> Score {
        Score { keys: (self.start as i64, self.end as i64), from: self.tail as i64 }
    }

    /// Adds a step's scores.
    pub(super) fn add(&mut self, got: &[f32]) {
        for (acc, s) in self.scores.iter_mut().zip(got) {
            *acc += s;
        }
    }

    /// The second pass: the selected memory positions and the question (`tail..total`), as
    /// pending ranges in order; and how many memory positions stay as laid in from the cache
    /// (the reused tokens).
    pub(super) fn plan(&self, total: usize) -> (VecDeque<Pending>, usize) {
        let budget = (self.scores.len() as f32 * self.ratio).ceil() as usize;
        let chosen = select(&self.scores, budget, WINDOW);
        let mut out: VecDeque<Pending> = VecDeque::new();
        let mut push = |from: usize, to: usize| match out.back_mut() {
            Some(last) if last.to == from => last.to = to,
            _ => out.push_back(Pending { from, to, candidate: false }),
        };
        for (i, _) in chosen.iter().enumerate().filter(|(_, &c)| c) {
            push(self.start + i, self.start + i + 1);
        }
        push(self.tail, total);
        let recomputed = chosen.iter().zip(&self.heads).filter(|(&c, &h)| c && !h).count();
        (out, self.laid - recomputed)
    }
}

/// Marks about `budget` of the positions: the highest scores first, each with `window`
/// neighbours either side, until the marked count reaches the budget (the last window is cut
/// to fit).
fn select(scores: &[f32], budget: usize, window: usize) -> Vec<bool> {
    let mut chosen = vec![false; scores.len()];
    let budget = budget.min(scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut marked = 0;
    for i in order {
        if marked >= budget {
            break;
        }
        // The token first, then its neighbours nearest first.
        let around = (1..=window).flat_map(|d| [i.checked_sub(d), Some(i + d)]).flatten();
        for j in std::iter::once(i).chain(around) {
            if marked < budget && j < scores.len() && !chosen[j] {
                chosen[j] = true;
                marked += 1;
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_attended_tokens_are_chosen_with_their_windows() {
        let mut scores = vec![0.0; 40];
        scores[10] = 5.0;
        scores[30] = 3.0;
        scores[39] = 1.0;
        let chosen = select(&scores, 18, 4);
        let marked: Vec<usize> = (0..40).filter(|&i| chosen[i]).collect();
        assert_eq!(marked, [6, 7, 8, 9, 10, 11, 12, 13, 14, 26, 27, 28, 29, 30, 31, 32, 33, 34]);
        // The budget cuts the last window, nearest neighbours first; it never overshoots.
        let chosen = select(&scores, 12, 4);
        assert_eq!((0..40).filter(|&i| chosen[i]).collect::<Vec<_>>(), [6, 7, 8, 9, 10, 11, 12, 13, 14, 29, 30, 31]);
        // A window at the end stays inside; a budget of everything marks everything.
        assert_eq!(select(&scores, 0, 4).iter().filter(|&&c| c).count(), 0);
        assert!(select(&scores, 100, 4).iter().all(|&c| c));
    }

    #[test]
    fn the_second_pass_is_the_chosen_positions_then_the_question() {
        let mut heads = vec![false; 40];
        heads[..2].fill(true);
        // 40 candidates, the first two a head; 36 memory positions laid in from the cache.
        let mut r = Rescore { start: 20, end: 60, tail: 60, ratio: 0.25, scores: vec![0.0; 40], heads, laid: 36 };
        let mut got = vec![0.0; 40];
        got[5] = 1.0;
        r.add(&got);
        r.add(&got);
        assert_eq!(r.scores[5], 2.0);
        let (plan, reused) = r.plan(70);
        // Ten chosen, two of them a head the first pass computed: 8 of the 36 recomputed.
        assert_eq!(reused, 28);
        let p = |from, to| Pending { from, to, candidate: false };
        // Token 25 and its window (21..30), then the next best (20, ties go left to right);
        // the ranges merge, then the question.
        assert_eq!(plan, VecDeque::from([p(20, 30), p(60, 70)]));
    }
}
