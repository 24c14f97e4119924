//! The engine's counters and gauges, shared between the model thread and the service, and
//! read by Prometheus at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters and gauges of the engine.
#[derive(Debug, Default)]
pub struct Stats {
    /// Jobs waiting for a slot.
    pub waiting: AtomicU64,
    /// Sequences in the running batch.
    pub active: AtomicU64,
    /// KV tokens reserved by running sequences.
    pub kv_tokens: AtomicU64,
    /// Tokens generated since start.
    pub tokens_generated: AtomicU64,
    /// Prompt tokens taken from the prefix cache instead of computed.
    pub prefix_hit_tokens: AtomicU64,
    /// Requests finished (any reason but cancellation).
    pub finished: AtomicU64,
    /// Requests cancelled (client gone or deadline passed).
    pub cancelled: AtomicU64,
    /// Requests refused at admission.
    pub rejected: AtomicU64,
    /// Sum of times to first token, in microseconds.
    pub ttft_us_total: AtomicU64,
    /// Model steps run.
    pub steps: AtomicU64,
    /// Memories found in the memory-KV cache.
    pub memory_hits: AtomicU64,
    /// Memories computed because the cache missed them.
    pub memory_misses: AtomicU64,
    /// Memories evicted from the cache.
    pub memory_evictions: AtomicU64,
    /// Bytes the memory-KV cache holds.
    pub memory_bytes: AtomicU64,
    /// Memories the cache holds.
    pub memory_entries: AtomicU64,
    /// Prompt tokens whose states came from the memory-KV cache instead of a prefill.
    pub memory_tokens_reused: AtomicU64,
    /// Memories read from the disk tier (also counted in `memory_hits`).
    pub memory_disk_hits: AtomicU64,
    /// Files of the disk tier found damaged or unusable (deleted, their memory computed).
    pub memory_disk_errors: AtomicU64,
    /// Files evicted from the disk tier.
    pub memory_disk_evictions: AtomicU64,
    /// Bytes the disk tier holds.
    pub memory_disk_bytes: AtomicU64,
    /// Memories the disk tier holds.
    pub memory_disk_entries: AtomicU64,
}

/// Exposes the engine's counters as Prometheus metrics (read at scrape time).
pub(super) fn register_metrics(stats: &Arc<Stats>) {
    use memgpt_telemetry::metrics::callback;
    let read = |f: fn(&Stats) -> &AtomicU64| {
        let stats = Arc::clone(stats);
        move || f(&stats).load(Ordering::Relaxed) as f64
    };
    callback("memgpt_generator_waiting_requests", "Requests waiting for a slot.", "gauge", &[], read(|s| &s.waiting));
    callback("memgpt_generator_active_sequences", "Sequences in the running batch.", "gauge", &[], read(|s| &s.active));
    callback("memgpt_generator_kv_tokens_reserved", "KV-cache tokens reserved by running sequences.", "gauge", &[], read(|s| &s.kv_tokens));
    callback("memgpt_generator_tokens_generated_total", "Tokens generated.", "counter", &[], read(|s| &s.tokens_generated));
    callback("memgpt_generator_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.", "counter", &[], read(|s| &s.prefix_hit_tokens));
    callback("memgpt_generator_requests_total", "Requests by outcome.", "counter", &[("outcome", "finished")], read(|s| &s.finished));
    callback("memgpt_generator_requests_total", "Requests by outcome.", "counter", &[("outcome", "cancelled")], read(|s| &s.cancelled));
    callback("memgpt_generator_requests_total", "Requests by outcome.", "counter", &[("outcome", "rejected")], read(|s| &s.rejected));
    callback("memgpt_generator_steps_total", "Model steps run.", "counter", &[], read(|s| &s.steps));
    let lookups = "Memory-KV cache lookups by outcome.";
    callback("memgpt_generator_memory_cache_lookups_total", lookups, "counter", &[("outcome", "hit")], read(|s| &s.memory_hits));
    callback("memgpt_generator_memory_cache_lookups_total", lookups, "counter", &[("outcome", "miss")], read(|s| &s.memory_misses));
    callback("memgpt_generator_memory_cache_evictions_total", "Memories evicted from the memory-KV cache.", "counter", &[], read(|s| &s.memory_evictions));
    callback("memgpt_generator_memory_cache_bytes", "Bytes held by the memory-KV cache.", "gauge", &[], read(|s| &s.memory_bytes));
    callback("memgpt_generator_memory_cache_entries", "Memories held by the memory-KV cache.", "gauge", &[], read(|s| &s.memory_entries));
    callback("memgpt_generator_memory_cache_lookups_total", lookups, "counter", &[("outcome", "disk_hit")], read(|s| &s.memory_disk_hits));
    callback("memgpt_generator_memory_cache_disk_errors_total", "Disk-tier files found damaged or unusable.", "counter", &[], read(|s| &s.memory_disk_errors));
    callback("memgpt_generator_memory_cache_disk_evictions_total", "Files evicted from the memory-KV disk tier.", "counter", &[], read(|s| &s.memory_disk_evictions));
    callback("memgpt_generator_memory_cache_disk_bytes", "Bytes held by the memory-KV disk tier.", "gauge", &[], read(|s| &s.memory_disk_bytes));
    callback("memgpt_generator_memory_cache_disk_entries", "Memories held by the memory-KV disk tier.", "gauge", &[], read(|s| &s.memory_disk_entries));
    callback("memgpt_generator_memory_tokens_reused_total", "Prompt tokens taken from the memory-KV cache instead of prefilled.", "counter", &[], read(|s| &s.memory_tokens_reused));
}
