//! Admission and budget accounting (TGI's `queue.rs`): jobs wait in arrival order and are
//! admitted while the running batch has a free slot and the KV budget covers the job's
//! prompt and new tokens; a finished sequence gives its reservation back.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::job::Job;
use super::stats::Stats;

/// The waiting jobs and the KV tokens reserved by running sequences.
pub(super) struct Queue {
    waiting: VecDeque<Job>,
    kv_reserved: u64,
    max_batch: usize,
    max_kv_tokens: u64,
    stats: Arc<Stats>,
}

impl Queue {
    pub(super) fn new(max_batch: usize, max_kv_tokens: u64, stats: Arc<Stats>) -> Self {
        Self { waiting: VecDeque::new(), kv_reserved: 0, max_batch, max_kv_tokens, stats }
    }

    pub(super) fn push(&mut self, job: Job) {
        self.waiting.push_back(job);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The next job to admit beside `running` sequences, with the KV tokens now reserved for
    /// it; none when the batch is full, the queue empty, or the budget short.
    pub(super) fn admit(&mut self, running: usize) -> Option<(Job, u64)> {
        if running >= self.max_batch {
            return None;
        }
        let job = self.waiting.front()?;
        let reserved = (job.prompt.len() + job.max_new) as u64;
        if self.kv_reserved + reserved > self.max_kv_tokens {
            return None;
        }
        let job = self.waiting.pop_front()?;
        self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
        self.kv_reserved += reserved;
        self.stats.kv_tokens.store(self.kv_reserved, Ordering::Relaxed);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        Some((job, reserved))
    }

    /// Gives back what an admitted job reserved, whether it ran or failed before its first
    /// step.
    pub(super) fn release(&mut self, reserved: u64) {
        self.kv_reserved -= reserved;
        self.stats.kv_tokens.store(self.kv_reserved, Ordering::Relaxed);
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops the waiting jobs whose client went away or whose deadline passed, telling them.
    pub(super) fn drop_expired(&mut self, now: Instant) {
        let before = self.waiting.len();
        self.waiting.retain(|job| {
            let gone = job.gone(now);
            if gone {
                let _ = job.tx.send(Err(tonic::Status::deadline_exceeded("the deadline passed while the request waited")));
            }
            !gone
        });
        self.count_cancelled((before - self.waiting.len()) as u64);
    }

    /// Refuses every waiting job (the engine is shutting down).
    pub(super) fn cancel_all(&mut self) {
        let jobs = std::mem::take(&mut self.waiting);
        self.count_cancelled(jobs.len() as u64);
        for job in jobs {
            let _ = job.tx.send(Err(tonic::Status::unavailable("the generator is shutting down")));
        }
    }

    fn count_cancelled(&self, n: u64) {
        self.stats.waiting.fetch_sub(n, Ordering::SeqCst);
        self.stats.cancelled.fetch_add(n, Ordering::Relaxed);
    }
}
