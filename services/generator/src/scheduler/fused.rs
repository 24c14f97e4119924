//! The scheduler's `fused` attend mode: a sequence's memories are laid into its KV cache from
//! the memory-KV cache (computing and caching the ones it misses, read-through), keys rotated
//! to their places; what remains to compute is the uncached prefix, the first
//! `recompute_head_tokens` of each memory (in place, now attending to what precedes it), and
//! the question. WarmMemories jobs fill the cache between steps, a prefill budget at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use memgpt_models::fused::{fused_plan, MemoryKv};
use memgpt_models::kv::KvCache;

use super::batch::Scheduler;
use super::Job;

impl Scheduler {
    /// Computes the states of memories alone (one ragged step) and caches them.
    fn compute_memories(&mut self, memories: &[(u64, &[u32])]) -> memgpt_models::Result<Vec<(Arc<MemoryKv>, bool)>> {
        let tokens: Vec<&[u32]> = memories.iter().map(|(_, t)| *t).collect();
        let computed = self.model.memory_kv(&tokens)?;
        let mut out = Vec::with_capacity(computed.len());
        for ((key, _), kv) in memories.iter().zip(computed) {
            let kv = Arc::new(kv);
            let inserted = self.memories.insert(*key, Arc::clone(&kv));
            self.stats.memory_evictions.fetch_add(inserted.evicted, Ordering::Relaxed);
            out.push((kv, inserted.cached));
        }
        self.stats.memory_bytes.store(self.memories.bytes(), Ordering::Relaxed);
        self.stats.memory_entries.store(self.memories.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Lays the memories of `job` into `cache` (whose first `computed` positions are filled)
    /// and returns the positions still to compute.
    pub(super) fn lay_memories(&mut self, job: &Job, cache: &mut KvCache, computed: usize) -> memgpt_models::Result<VecDeque<(usize, usize)>> {
        let spans: Vec<(usize, usize)> = job.spans.iter().map(|&(a, b)| (a as usize, b as usize)).collect();
        let mut found: Vec<Option<Arc<MemoryKv>>> = Vec::with_capacity(spans.len());
        let mut missing: Vec<(u64, &[u32])> = Vec::new();
        for (&(a, b), &key) in spans.iter().zip(&job.memory_keys) {
            let tokens = &job.prompt[a..b];
            let hit = self.memories.get(key, tokens);
            if hit.is_none() && !missing.iter().any(|(k, _)| *k == key) {
                missing.push((key, tokens));
            }
            found.push(hit);
        }
        let hits = found.iter().filter(|f| f.is_some()).count();
        self.stats.memory_hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.stats.memory_misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        let computed_now: HashMap<u64, Arc<MemoryKv>> = if missing.is_empty() {
            HashMap::new()
        } else {
            let keys: Vec<u64> = missing.iter().map(|(k, _)| *k).collect();
            let states = self.compute_memories(&missing)?;
            keys.into_iter().zip(states.into_iter().map(|(kv, _)| kv)).collect()
        };
        let head = self.config.recompute_head_tokens;
        let mut reused = 0u64;
        for ((&(a, b), &key), hit) in spans.iter().zip(&job.memory_keys).zip(found) {
            let kv = hit.or_else(|| computed_now.get(&key).cloned()).expect("every memory was found or computed");
            self.model.place_memory(cache, a as i64, &kv)?;
            reused += (b - a).saturating_sub(head) as u64;
        }
        self.stats.memory_tokens_reused.fetch_add(reused, Ordering::Relaxed);
        tracing::debug!(parent: &job.span, memories = spans.len(), hits, misses = missing.len(), reused_tokens = reused, "memories laid in");
        Ok(fused_plan(computed, &spans, head, job.memory_end, job.prompt.len()).into())
    }

    /// Advances the first WarmMemories job by up to one prefill budget of memory tokens
    /// (at least one memory), answering it when it is done.
    pub(super) fn warm_some(&mut self) {
        let Some((job, next, cached)) = self.warming.front_mut() else { return };
        if job.tx.is_closed() {
            self.warming.pop_front();
            return;
        }
        let (mut at, mut now_cached) = (*next, *cached);
        let budget = self.config.max_batch_prefill_tokens;
        let mut batch: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut tokens = 0;
        while at < job.memories.len() && (batch.is_empty() || tokens + job.memories[at].1.len() <= budget) {
            let (key, ref toks) = job.memories[at];
            at += 1;
            if self.memories.get(key, toks).is_some() {
                self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                now_cached += 1;
            } else if !batch.iter().any(|(k, _)| *k == key) {
                tokens += toks.len();
                batch.push((key, toks.clone()));
            }
        }
        let done = at == job.memories.len();
        let refs: Vec<(u64, &[u32])> = batch.iter().map(|(k, t)| (*k, t.as_slice())).collect();
        let outcome = if refs.is_empty() { Ok(Vec::new()) } else { self.compute_memories(&refs) };
        self.stats.memory_misses.fetch_add(refs.len() as u64, Ordering::Relaxed);
        match outcome {
            Ok(states) => {
                now_cached += states.iter().filter(|(_, cached)| *cached).count() as u32;
                if done {
                    let (job, _, _) = self.warming.pop_front().expect("the job being warmed");
                    tracing::debug!(memories = job.memories.len(), cached = now_cached, bytes = self.memories.bytes(), "memories warmed");
                    let _ = job.tx.send(Ok((now_cached, self.memories.bytes())));
                } else if let Some(front) = self.warming.front_mut() {
                    front.1 = at;
                    front.2 = now_cached;
                }
            }
            Err(err) => {
                let (job, _, _) = self.warming.pop_front().expect("the job being warmed");
                tracing::error!(error = %err, "warming memories failed");
                let _ = job.tx.send(Err(err.into()));
            }
        }
    }
}
