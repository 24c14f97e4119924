//! The memory-KV cache of the `fused` attend mode: each memory's states computed after the
//! prompt's prefix (system prompt) without the other memories, keyed by a hash of the prefix's
//! tokens and the memory's id and text (the model is the engine's own), held on the
//! model's device under a byte budget, least recently used first out. An entry's tokens are
//! compared on every hit, so a hash collision is a miss, never a wrong memory.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use memgpt_models::llama::fused::MemoryKv;

/// The key of a memory: its id and a hash of its text.
pub fn memory_key(id: &str, text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

/// The cache key of a memory's states computed after `prefix` (the prompt's tokens before the
/// memories: the same memory after another system prompt has other states).
pub fn scoped_key(prefix: &[u32], memory: u64) -> u64 {
    let mut h = DefaultHasher::new();
    prefix.hash(&mut h);
    memory.hash(&mut h);
    h.finish()
}

struct Entry {
    kv: Arc<MemoryKv>,
    bytes: u64,
    last_used: u64,
}

/// What an insertion did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Whether the entry is now cached (false when it alone exceeds the budget).
    pub cached: bool,
    /// Entries evicted to make room.
    pub evicted: u64,
}

/// Memory states under a byte budget.
pub struct MemoryCache {
    budget: u64,
    bytes: u64,
    clock: u64,
    entries: HashMap<u64, Entry>,
}

impl MemoryCache {
    /// An empty cache of at most `budget` bytes (0 caches nothing).
    pub fn new(budget: u64) -> Self {
        Self { budget, bytes: 0, clock: 0, entries: HashMap::new() }
    }

    /// Bytes held; never above the budget.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached states of the memory `key` whose tokens are `tokens`, marked recently used.
    pub fn get(&mut self, key: u64, tokens: &[u32]) -> Option<Arc<MemoryKv>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&key).filter(|e| e.kv.tokens == tokens)?;
        entry.last_used = self.clock;
        Some(Arc::clone(&entry.kv))
    }

    /// Caches `kv` under `key`, evicting the least recently used entries to stay within the
    /// budget. States larger than the whole budget are not cached.
    pub fn insert(&mut self, key: u64, kv: Arc<MemoryKv>) -> Inserted {
        let bytes = kv.bytes();
        if bytes > self.budget {
            return Inserted::default();
        }
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.bytes;
        }
        let mut evicted = 0;
        while self.bytes + bytes > self.budget {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_used) else { break };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
                evicted += 1;
            }
        }
        self.clock += 1;
        self.bytes += bytes;
        self.entries.insert(key, Entry { kv, bytes, last_used: self.clock });
        Inserted { cached: true, evicted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// States of `tokens` tokens: 2 layers, 1 head of width 4, f32 (64 bytes per token).
    fn kv(first: u32, tokens: usize) -> Arc<MemoryKv> {
        let t = || Tensor::zeros([1, 1, tokens as i64, 4], (Kind::Float, tch::Device::Cpu));
        Arc::new(MemoryKv { tokens: (first..first + tokens as u32).collect(), base: 0, keys: vec![t(), t()], values: vec![t(), t()] })
    }

    #[test]
    fn filling_past_the_budget_evicts_least_recently_used_and_never_exceeds_it() {
        let mut cache = MemoryCache::new(1000); // room for 15 tokens
        let mut evicted = 0;
        for i in 0..40u32 {
            let entry = kv(i * 10, 1 + (i as usize % 4));
            let out = cache.insert(u64::from(i), entry);
            assert!(out.cached);
            evicted += out.evicted;
            assert!(cache.bytes() <= 1000, "{} bytes after insert {i}", cache.bytes());
            // Keep entry 0 hot: it must survive every eviction.
            assert!(cache.get(0, &[0]).is_some(), "the hot entry was evicted at insert {i}");
        }
        assert!(evicted > 0);
        assert!(cache.get(1, &[10, 11]).is_none(), "an old cold entry is gone");
        let held: u64 = cache.entries.values().map(|e| e.bytes).sum();
        assert_eq!(held, cache.bytes());
    }

    #[test]
    fn a_hash_collision_is_a_miss_and_oversized_states_are_not_cached() {
        let mut cache = MemoryCache::new(1000);
        cache.insert(7, kv(0, 3));
        assert!(cache.get(7, &[0, 1, 2]).is_some());
        assert!(cache.get(7, &[0, 1, 5]).is_none());
        let out = cache.insert(8, kv(0, 100));
        assert_eq!(out, Inserted { cached: false, evicted: 0 });
        assert_eq!(cache.len(), 1);
        assert_ne!(memory_key("a", "text"), memory_key("b", "text"));
        assert_ne!(memory_key("a", "text"), memory_key("a", "text!"));
    }
}
