//! Cache-aware routing of generations: the gateway's record of which memories' key/value
//! states each generator holds (the memories it last sent there, in a generation or a warm),
//! so that a request goes where most of its memories are already computed. SGLang's router
//! keeps such an approximate record per worker (a radix tree of prompts); here the unit is a
//! whole memory after a system prompt, the generator's own cache entry. Bounded per
//! generator, the least recently used out first, as the generator's cache evicts.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// How generations choose among healthy generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Routing {
    /// To the generator holding most of the request's memories, unless its calls in flight
    /// exceed the least loaded one's by more than the load bound (then least-in-flight).
    CacheAware,
    /// To the generator with the fewest calls in flight; warming goes to every generator.
    LeastInFlight,
}

/// The routing key of memory `id` (text `text`) after the system prompt `system`: the
/// generator caches a memory's states per prompt prefix and memory.
pub fn key(system: &str, id: &str, text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (system, id, text).hash(&mut h);
    h.finish()
}

/// A bounded set of keys, least recently used out first.
#[derive(Debug)]
pub struct KeySet {
    capacity: usize,
    /// Key → the tick of its last use.
    last: HashMap<u64, u64>,
    /// (key, tick) in use order; entries whose tick is not the key's last are stale.
    order: VecDeque<(u64, u64)>,
    tick: u64,
}

impl KeySet {
    /// An empty set of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), last: HashMap::new(), order: VecDeque::new(), tick: 0 }
    }

    /// How many of `keys` the set holds.
    pub fn count(&self, keys: &[u64]) -> usize {
        keys.iter().filter(|k| self.last.contains_key(k)).count()
    }

    /// Adds `keys` (or marks them used), evicting the least recently used beyond capacity.
    pub fn insert(&mut self, keys: &[u64]) {
        for &k in keys {
            self.tick += 1;
            self.last.insert(k, self.tick);
            self.order.push_back((k, self.tick));
        }
        while self.last.len() > self.capacity {
            let Some((k, t)) = self.order.pop_front() else { break };
            if self.last.get(&k) == Some(&t) {
                self.last.remove(&k);
            }
        }
        // Stale entries of keys used again: compact once they outnumber the live ones.
        if self.order.len() > 2 * self.last.len() + 64 {
            let last = &self.last;
            self.order.retain(|(k, t)| last.get(k) == Some(t));
        }
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.last.clear();
        self.order.clear();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// One candidate of a routing choice: its keys held among the request's and its calls in
/// flight.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Of the request's memories, how many the generator holds.
    pub held: usize,
    /// Its calls in flight.
    pub in_flight: usize,
}

/// The index of the candidate a request goes to, `candidates` in round-robin order (the
/// first wins ties): the one holding most of its memories, unless none holds any or that
/// one's calls in flight exceed the least loaded one's by more than `bound`: then the least
/// loaded.
pub fn choose(candidates: &[Candidate], bound: usize) -> Option<usize> {
    let least = (0..candidates.len()).min_by_key(|&i| candidates[i].in_flight)?;
    let best = (0..candidates.len()).max_by_key(|&i| (candidates[i].held, std::cmp::Reverse(candidates[i].in_flight), std::cmp::Reverse(i)))?;
    let (b, l) = (candidates[best], candidates[least]);
    if b.held == 0 || b.in_flight > l.in_flight + bound {
        Some(least)
    } else {
        Some(best)
    }
}
