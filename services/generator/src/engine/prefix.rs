//! The prefix cache: KV states of prompt blocks, keyed by a hash of every token up to the
//! block's end, so a prompt that begins like an earlier one (the same system prompt, the same
//! leading memories) copies those states instead of computing them. Least recently used
//! blocks are dropped to stay within a byte budget.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use memgpt_models::llama::kv::KvCache;
use tch::Tensor;

struct Block {
    tokens: Vec<u32>,
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    bytes: u64,
    /// (call, deepest first): within one prompt the leading blocks outlive the later ones,
    /// since a later block is useless without those before it.
    last_used: (u64, Reverse<usize>),
}

/// Prompt-prefix KV blocks under a byte budget.
pub struct PrefixCache {
    block: usize,
    budget: u64,
    bytes: u64,
    clock: u64,
    blocks: HashMap<u64, Block>,
}

fn chain(tokens: &[u32], block: usize) -> Vec<u64> {
    let mut hashes = Vec::with_capacity(tokens.len() / block);
    let mut previous = 0u64;
    for chunk in tokens.chunks_exact(block) {
        let mut h = DefaultHasher::new();
        previous.hash(&mut h);
        chunk.hash(&mut h);
        previous = h.finish();
        hashes.push(previous);
    }
    hashes
}

impl PrefixCache {
    /// A cache of `block`-token blocks within `budget` bytes (0 turns it off).
    pub fn new(block: usize, budget: u64) -> Self {
        Self { block: block.max(1), budget, bytes: 0, clock: 0, blocks: HashMap::new() }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Copies the longest cached prefix of `prompt` into the empty `cache`, leaving at least
    /// the last prompt token to compute; returns how many tokens were filled.
    pub fn fill(&mut self, prompt: &[u32], cache: &mut KvCache) -> usize {
        if self.budget == 0 || prompt.len() < 2 {
            return 0;
        }
        let usable = &prompt[..prompt.len() - 1];
        let mut filled = 0;
        self.clock += 1;
        for (i, hash) in chain(usable, self.block).into_iter().enumerate() {
            let tokens = &usable[i * self.block..(i + 1) * self.block];
            match self.blocks.get_mut(&hash) {
                Some(b) if b.tokens == tokens => {
                    b.last_used = (self.clock, Reverse(i));
                    cache.write(filled as i64, &b.keys, &b.values);
                    filled += self.block;
                }
                _ => break,
            }
        }
        filled
    }

    /// Stores the blocks of `prompt` (whose states `cache` holds) that are not cached yet.
    pub fn insert(&mut self, prompt: &[u32], cache: &KvCache) {
        if self.budget == 0 {
            return;
        }
        let usable = &prompt[..prompt.len().saturating_sub(1).min(cache.len() as usize)];
        self.clock += 1;
        for (i, hash) in chain(usable, self.block).into_iter().enumerate() {
            if let Some(b) = self.blocks.get_mut(&hash) {
                b.last_used = (self.clock, Reverse(i));
                continue;
            }
            let (keys, values) = cache.read((i * self.block) as i64, self.block as i64);
            let bytes: u64 = keys.iter().chain(&values).map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum();
            if bytes > self.budget {
                return;
            }
            while self.bytes + bytes > self.budget {
                self.evict_one();
            }
            let tokens = usable[i * self.block..(i + 1) * self.block].to_vec();
            self.bytes += bytes;
            self.blocks.insert(hash, Block { tokens, keys, values, bytes, last_used: (self.clock, Reverse(i)) });
        }
    }

    fn evict_one(&mut self) {
        if let Some((&hash, _)) = self.blocks.iter().min_by_key(|(_, b)| b.last_used) {
            if let Some(b) = self.blocks.remove(&hash) {
                self.bytes -= b.bytes;
            }
        }
    }
}
