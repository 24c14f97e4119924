//! The `fused` attend mode, owner of the memory-KV cache. A memory's states are computed
//! after the prompt's prefix (BOS and the system prompt) without the other memories, and
//! cached under the prefix, the memory's id and its text. A sequence's memories are laid into
//! its KV cache from that cache (computing the ones it misses, read-through), keys rotated to
//! their places; what remains to compute is the first `recompute_head_tokens` of each memory
//! (in place, now attending to the memories before it) and the question. WarmMemories jobs
//! fill the cache between steps, a prefill budget at a time. With a disk tier ([`DiskTier`])
//! a lookup goes RAM, then disk, then compute, and what is computed is also written to disk.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use memgpt_models::llama::fused::{fused_plan, MemoryKv};
use memgpt_models::llama::kv::KvCache;
use memgpt_models::llama::Llama;
use memgpt_models::llama::ragged::SeqStep;

use super::job::{Job, RecomputeRule, WarmJob};
use super::disk::DiskTier;
use super::rescore::Rescore;
use super::memcache::{scoped_key, MemoryCache};
use super::prefix::PrefixCache;
use super::sequence::Pending;
use super::stats::Stats;

/// A WarmMemories job in progress.
struct Warming {
    job: WarmJob,
    /// Memories done.
    next: usize,
    /// Memories found cached or cached so far.
    cached: u32,
    /// States of the job's prefix, once computed.
    prefix: Option<KvCache>,
}

/// The memory-KV cache and the WarmMemories jobs that fill it.
pub(super) struct Fused {
    memories: MemoryCache,
    disk: Option<DiskTier>,
    warming: VecDeque<Warming>,
    /// Leading tokens of each memory recomputed in place.
    head: usize,
    /// Most memory tokens a warming piece computes.
    budget: usize,
    stats: Arc<Stats>,
}

/// Completes the states of `prefix` in `cache` (whose first `computed` positions are filled,
/// from the prefix cache).
fn compute_prefix(model: &Llama, prefix: &[u32], cache: &mut KvCache, computed: usize) -> memgpt_models::Result<()> {
    if computed < prefix.len() {
        let mut step = [SeqStep::new(&prefix[computed..], cache)];
        model.forward_ragged(&mut step, 1)?;
    }
    Ok(())
}

impl Fused {
    pub(super) fn new(cache_bytes: u64, head: usize, budget: usize, stats: Arc<Stats>, disk: Option<DiskTier>) -> Self {
        Self { memories: MemoryCache::new(cache_bytes), disk, warming: VecDeque::new(), head, budget, stats }
    }

    /// The cached states of memory `key` computed after `prefix`: from RAM, else from the
    /// disk tier (then kept in RAM too).
    fn lookup(&mut self, prefix: &[u32], key: u64, tokens: &[u32], device: tch::Device) -> Option<Arc<MemoryKv>> {
        if let Some(kv) = self.memories.get(key, tokens) {
            return Some(kv);
        }
        let kv = Arc::new(self.disk.as_mut()?.load(prefix, key, tokens, device)?);
        self.keep(key, Arc::clone(&kv));
        Some(kv)
    }

    /// Keeps states in RAM; whether they fit.
    fn keep(&mut self, key: u64, kv: Arc<MemoryKv>) -> bool {
        let inserted = self.memories.insert(key, kv);
        self.stats.memory_evictions.fetch_add(inserted.evicted, Ordering::Relaxed);
        self.stats.memory_bytes.store(self.memories.bytes(), Ordering::Relaxed);
        self.stats.memory_entries.store(self.memories.len() as u64, Ordering::Relaxed);
        inserted.cached
    }

    /// Queues a WarmMemories job.
    pub(super) fn warm(&mut self, job: WarmJob) {
        self.warming.push_back(Warming { job, next: 0, cached: 0, prefix: None });
    }

    /// Whether no WarmMemories job waits.
    pub(super) fn idle(&self) -> bool {
        self.warming.is_empty()
    }

    /// Refuses every WarmMemories job (the engine is shutting down).
    pub(super) fn cancel_all(&mut self) {
        for Warming { job, .. } in std::mem::take(&mut self.warming) {
            let _ = job.tx.send(Err(crate::error::GeneratorError::Unavailable("the generator is shutting down".into())));
        }
    }

    /// Computes the states of memories after `prefix` (whose tokens are `prefix_tokens`; one
    /// ragged step) and caches them, on disk too when there is a disk tier.
    fn compute_memories(&mut self, model: &Llama, prefix_tokens: &[u32], prefix: &KvCache, memories: &[(u64, &[u32])]) -> memgpt_models::Result<Vec<(Arc<MemoryKv>, bool)>> {
        let tokens: Vec<&[u32]> = memories.iter().map(|(_, t)| *t).collect();
        let computed = model.memory_kv_after(prefix, &tokens)?;
        let mut out = Vec::with_capacity(computed.len());
        for ((key, _), kv) in memories.iter().zip(computed) {
            let kv = Arc::new(kv);
            if let Some(disk) = self.disk.as_mut() {
                disk.store(prefix_tokens, *key, &kv);
            }
            let cached = self.keep(*key, Arc::clone(&kv));
            out.push((kv, cached));
        }
        Ok(out)
    }

    /// Lays the memories of `job` into `cache` (whose first `computed` positions are filled)
    /// and returns the positions still to compute.
    pub(super) fn lay_memories(&mut self, model: &Llama, job: &Job, cache: &mut KvCache, computed: usize) -> memgpt_models::Result<VecDeque<Pending>> {
        let prefix = &job.prompt[..job.memory_start];
        let spans: Vec<(usize, usize)> = job.spans.iter().map(|&(a, b)| (a as usize, b as usize)).collect();
        let keys: Vec<u64> = job.memory_keys.iter().map(|&k| scoped_key(prefix, k)).collect();
        let mut found: Vec<Option<Arc<MemoryKv>>> = Vec::with_capacity(spans.len());
        let mut missing: Vec<(u64, &[u32])> = Vec::new();
        for (&(a, b), &key) in spans.iter().zip(&keys) {
            let tokens = &job.prompt[a..b];
            let hit = self.lookup(prefix, key, tokens, model.device);
            if hit.is_none() && !missing.iter().any(|(k, _)| *k == key) {
                missing.push((key, tokens));
            }
            found.push(hit);
        }
        let hits = found.iter().filter(|f| f.is_some()).count();
        self.stats.memory_hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.stats.memory_misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        let mut computed = computed;
        let mut fresh: HashMap<u64, Arc<MemoryKv>> = HashMap::new();
        if !missing.is_empty() {
            // The memories it misses are computed after this sequence's own prefix.
            compute_prefix(model, prefix, cache, computed)?;
            computed = prefix.len();
            let states = self.compute_memories(model, prefix, cache, &missing)?;
            fresh = missing.iter().map(|(k, _)| *k).zip(states.into_iter().map(|(kv, _)| kv)).collect();
        }
        let head = self.head;
        let ratio = job.recompute_ratio;
        let mut reused = 0u64;
        for (i, ((&(a, b), key), hit)) in spans.iter().zip(&keys).zip(found).enumerate() {
            let kv = hit.or_else(|| fresh.get(key).cloned()).expect("every memory was found or computed");
            model.place_memory(cache, a as i64, &kv)?;
            let rest = (b - a).saturating_sub(head);
            if job.recompute_memories.get(i).copied().unwrap_or(false) {
                continue;
            }
            reused += match job.recompute_rule {
                RecomputeRule::Deviation => rest as u64 - (rest as f32 * ratio).ceil() as u64,
                RecomputeRule::Query => rest as u64,
            };
        }
        // A query-rule recompute counts its reuse once its second pass is planned (the
        // scheduler), so a request cancelled before then counts none.
        if !Rescore::applies(job) {
            self.stats.memory_tokens_reused.fetch_add(reused, Ordering::Relaxed);
        }
        tracing::debug!(parent: &job.span, memories = spans.len(), hits, misses = missing.len(), reused_tokens = reused, "memories laid in");
        let exact = fused_plan(computed, &spans, head, job.memory_end, job.prompt.len());
        // Memories recomputed whole join the exact ranges, and are no candidates.
        let whole: Vec<(usize, usize)> = spans.iter().zip(&job.recompute_memories).filter(|(_, &w)| w).map(|(&(a, b), _)| (a.max(computed), b)).collect();
        let exact = merge(exact.into_iter().chain(whole.iter().copied()).collect());
        let candidates: Vec<(usize, usize)> = spans.iter().zip(&job.recompute_memories).filter(|(_, &w)| !w).map(|(&s, _)| s).collect();
        Ok(with_candidates(&exact, &candidates, computed, ratio > 0.0 && job.recompute_rule == RecomputeRule::Deviation))
    }

    /// Advances the first WarmMemories job by up to one prefill budget of memory tokens
    /// (at least one memory), answering it when it is done.
    pub(super) fn warm_some(&mut self, model: &Llama, prefix: &mut PrefixCache) {
        let Some(mut w) = self.warming.pop_front() else { return };
        if w.job.tx.is_closed() {
            return;
        }
        match self.warm_step(model, prefix, &mut w) {
            Ok(true) => {
                tracing::debug!(memories = w.job.memories.len(), cached = w.cached, bytes = self.memories.bytes(), "memories warmed");
                let _ = w.job.tx.send(Ok((w.cached, self.memories.bytes())));
            }
            Ok(false) => self.warming.push_front(w),
            Err(err) => {
                tracing::error!(error = %err, "warming memories failed");
                let _ = w.job.tx.send(Err(err.into()));
            }
        }
    }

    /// One piece of a WarmMemories job; true when the job is done.
    fn warm_step(&mut self, model: &Llama, prefix_cache: &mut PrefixCache, w: &mut Warming) -> memgpt_models::Result<bool> {
        let prefix = match w.prefix.take() {
            Some(states) => states,
            None => {
                let c = &model.config;
                let mut states = KvCache::uninit(c.n_layer, 1, c.n_head_kv, w.job.prefix.len() as i64, c.head_dim, model.kind, model.device);
                // The prefix cache leaves a prompt's last token to compute: offer one more.
                let probe: Vec<u32> = w.job.prefix.iter().copied().chain([0]).collect();
                let filled = prefix_cache.fill(&probe, &mut states);
                compute_prefix(model, &w.job.prefix, &mut states, filled)?;
                states
            }
        };
        let budget = self.budget;
        let mut batch: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut tokens = 0;
        while w.next < w.job.memories.len() && (batch.is_empty() || tokens + w.job.memories[w.next].1.len() <= budget) {
            let (memory, ref toks) = w.job.memories[w.next];
            let key = scoped_key(&w.job.prefix, memory);
            w.next += 1;
            if self.lookup(&w.job.prefix, key, toks, model.device).is_some() {
                self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                w.cached += 1;
            } else if !batch.iter().any(|(k, _)| *k == key) {
                tokens += toks.len();
                batch.push((key, toks.clone()));
            }
        }
        let refs: Vec<(u64, &[u32])> = batch.iter().map(|(k, t)| (*k, t.as_slice())).collect();
        if !refs.is_empty() {
            self.stats.memory_misses.fetch_add(refs.len() as u64, Ordering::Relaxed);
            let states = self.compute_memories(model, &w.job.prefix, &prefix, &refs)?;
            w.cached += states.iter().filter(|(_, cached)| *cached).count() as u32;
        }
        let done = w.next == w.job.memories.len();
        if !done {
            w.prefix = Some(prefix);
        }
        Ok(done)
    }
}

/// Ranges sorted and merged where they touch or overlap.
fn merge(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.retain(|&(a, b)| b > a);
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The plan as pending ranges; with `select`, the memory tokens it leaves out are added as
/// candidates of the selective recompute (computed through layer 1, then kept only if their
/// states deviate most).
fn with_candidates(exact: &[(usize, usize)], spans: &[(usize, usize)], computed: usize, select: bool) -> VecDeque<Pending> {
    let mut out: Vec<Pending> = exact.iter().map(|&(from, to)| Pending { from, to, candidate: false }).collect();
    if select {
        for &(a, b) in spans {
            let mut at = a.max(computed);
            for &(from, to) in exact {
                if to <= at || from >= b {
                    continue;
                }
                if from > at {
                    out.push(Pending { from: at, to: from.min(b), candidate: true });
                }
                at = at.max(to);
            }
            if at < b {
                out.push(Pending { from: at, to: b, candidate: true });
            }
        }
        out.sort_by_key(|p| p.from);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_fill_the_memory_tokens_the_plan_leaves_out() {
        let spans = [(10, 30), (30, 60)];
        let exact = fused_plan(10, &spans, 4, 60, 70);
        let p = |from, to, candidate| Pending { from, to, candidate };
        assert_eq!(with_candidates(&exact, &spans, 10, false), VecDeque::from([p(10, 14, false), p(30, 34, false), p(60, 70, false)]));
        assert_eq!(with_candidates(&exact, &spans, 10, true), VecDeque::from([p(10, 14, false), p(14, 30, true), p(30, 34, false), p(34, 60, true), p(60, 70, false)]));
        // A memory shorter than its head has no candidates; the ranges never overlap.
        let exact = fused_plan(0, &[(5, 7), (7, 20)], 4, 20, 22);
        assert_eq!(with_candidates(&exact, &[(5, 7), (7, 20)], 0, true), VecDeque::from([p(0, 11, false), p(11, 20, true), p(20, 22, false)]));
    }

    #[test]
    fn a_memory_recomputed_whole_joins_the_exact_ranges() {
        // The second of two memories recomputed whole: its span merges with the question's.
        let exact = merge(fused_plan(10, &[(10, 30), (30, 60)], 4, 60, 70).into_iter().chain([(30, 60)]).collect());
        assert_eq!(exact, [(10, 14), (30, 70)]);
        let p = |from, to, candidate| Pending { from, to, candidate };
        assert_eq!(with_candidates(&exact, &[(10, 30)], 10, true), VecDeque::from([p(10, 14, false), p(14, 30, true), p(30, 70, false)]));
        assert_eq!(merge(vec![(5, 5), (3, 4), (0, 2), (1, 3)]), [(0, 4)], "empty ranges dropped, the rest sorted and merged");
    }
}
