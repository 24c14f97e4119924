//! Memory-KV fusion, the `fused` attend mode's model side: a memory's keys and values are
//! computed once, without the other memories (alone from position 0, or after a shared
//! prefix such as the system prompt), and later laid into a sequence's cache at any offset. RoPE makes this cheap: a key rotated to position `p` and then by `o` is the key
//! at `p + o`, so moving a memory is one rotation of its keys; values do not depend on the
//! position. (Position-independent KV reuse as in TurboRAG, EPIC and Block-Attention.)

use tch::Tensor;

use crate::error::{ModelError, Result};
use crate::llama::kv::KvCache;
use crate::llama::{inv_freq, Llama};
use crate::llama::ragged::SeqStep;

/// The key/value states of one memory computed without the other memories.
pub struct MemoryKv {
    /// Its tokens.
    pub tokens: Vec<u32>,
    /// Position of its first token when computed (0 alone, the prefix length after one).
    pub base: i64,
    /// Keys of every layer, `[1, kv_heads, tokens, head_dim]`, rotated to positions
    /// `base..base + tokens`.
    pub keys: Vec<Tensor>,
    /// Values of every layer, `[1, kv_heads, tokens, head_dim]`.
    pub values: Vec<Tensor>,
}

impl MemoryKv {
    /// Tokens held.
    pub fn len(&self) -> i64 {
        self.tokens.len() as i64
    }

    /// Whether it holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Bytes of its tensors.
    pub fn bytes(&self) -> u64 {
        self.keys.iter().chain(&self.values).map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum()
    }
}

impl Llama {
    /// The states of each token list computed alone from position 0, all in one ragged step.
    pub fn memory_kv(&self, memories: &[&[u32]]) -> Result<Vec<MemoryKv>> {
        let c = &self.config;
        let empty = KvCache::uninit(c.n_layer, 1, c.n_head_kv, 0, c.head_dim, self.kind, self.device);
        self.memory_kv_after(&empty, memories)
    }

    /// The states of each token list computed right after the states `prefix` holds (all in
    /// one ragged step): each memory sees the prefix and itself, not the other memories.
    pub fn memory_kv_after(&self, prefix: &KvCache, memories: &[&[u32]]) -> Result<Vec<MemoryKv>> {
        if memories.is_empty() {
            return Ok(Vec::new());
        }
        let c = &self.config;
        let base = prefix.len();
        let (pk, pv) = prefix.read(0, base);
        let mut caches: Vec<KvCache> = memories
            .iter()
            .map(|m| {
                let mut cache = KvCache::uninit(c.n_layer, 1, c.n_head_kv, base + m.len() as i64, c.head_dim, self.kind, self.device);
                if base > 0 {
                    cache.write(0, &pk, &pv);
                }
                cache
            })
            .collect();
        let mut steps: Vec<SeqStep<'_>> = memories.iter().zip(caches.iter_mut()).map(|(m, cache)| SeqStep::new(m, cache)).collect();
        self.forward_ragged(&mut steps, 1)?;
        drop(steps);
        Ok(memories
            .iter()
            .zip(caches)
            .map(|(m, cache)| {
                let (keys, values) = cache.read(base, m.len() as i64);
                MemoryKv { tokens: m.to_vec(), base, keys, values }
            })
            .collect())
    }

    /// Keys (`[.., T, head_dim]`, rotated to some positions `p`) rotated further by `offset`,
    /// to positions `p + offset`. The rotation's cos and sin are computed in f64.
    pub fn rotate_keys(&self, keys: &Tensor, offset: i64) -> Tensor {
        self.rope(keys, &self.rotation(offset, keys.kind(), keys.device()))
    }

    /// cos and sin (`[head_dim]`) of the rotation by `offset` positions, computed in f64.
    fn rotation(&self, offset: i64, kind: tch::Kind, device: tch::Device) -> (Tensor, Tensor) {
        let angles: Vec<f64> = inv_freq(&self.config).iter().map(|f| offset as f64 * f).collect();
        let table = |g: fn(f64) -> f64| {
            let half: Vec<f64> = angles.iter().map(|&a| g(a)).collect();
            let full = [half.as_slice(), half.as_slice()].concat();
            Tensor::from_slice(&full).to_kind(kind).to_device(device)
        };
        (table(f64::cos), table(f64::sin))
    }

    /// Lays `memory` into `cache` at positions `at..at + len`: keys rotated by `at - base`,
    /// values as they are. The cache's filled length is not changed (see [`KvCache::set_filled`]).
    pub fn place_memory(&self, cache: &mut KvCache, at: i64, memory: &MemoryKv) -> Result<()> {
        let end = at + memory.len();
        if at < 0 || end > cache.capacity() || end > self.config.context_length {
            return Err(ModelError::InvalidInput {
                field: "memory".into(),
                reason: format!("positions {at}..{end} exceed the KV cache capacity {} or the context length {}", cache.capacity(), self.config.context_length),
            });
        }
        // One rotation for every layer.
        let rotation = self.rotation(at - memory.base, self.kind, self.device);
        let keys: Vec<Tensor> = memory.keys.iter().map(|k| self.rope(&k.to_kind(self.kind), &rotation)).collect();
        cache.put(at, &keys, &memory.values);
        Ok(())
    }
}

/// Key-position ranges `[start, end)` a sequence must compute when its memories were laid in
/// from cached states: the uncached part of the prefix (`computed..memory_start`), the first
/// `head` tokens of each memory span (recomputed in place, attending to everything before
/// them), and everything after the last memory (`tail_start..total`). Adjacent ranges are
/// merged. The memory spans must be contiguous, from the prefix's end to `tail_start`. With `head` at least every memory's length the plan covers every position from
/// `computed`, which is plain prefill.
pub fn fused_plan(computed: usize, memory_spans: &[(usize, usize)], head: usize, tail_start: usize, total: usize) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let first = memory_spans.first().map(|s| s.0).unwrap_or(tail_start);
    let mut push = |a: usize, b: usize| {
        if b <= a {
            return;
        }
        match ranges.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => ranges.push((a, b)),
        }
    };
    push(computed, first.max(computed));
    for &(a, b) in memory_spans {
        push(a.max(computed), (a + head).min(b));
    }
    push(tail_start.max(computed), total);
    ranges
}
