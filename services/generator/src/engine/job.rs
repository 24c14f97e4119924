//! The work the model thread takes: a generation ([`Job`]) or a WarmMemories call
//! ([`WarmJob`]), each with the channel its outcome goes to.

use std::time::Instant;

use memgpt_models::llama::ragged::Calibrate;
use memgpt_proto::generator::v1::GenerateResponse;
use tokio::sync::mpsc::UnboundedSender;

use super::sampling::SamplingParams;
use crate::error::Result;

/// Which memory tokens the fused mode recomputes beyond each memory's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecomputeRule {
    /// The ones the question's tokens attend to most over the laid-in states.
    Query,
    /// The ones whose layer-1 states deviate most from the laid-in ones (CacheBlend).
    Deviation,
}

/// One generation request, ready for the model thread.
pub struct Job {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Token span of each memory (contiguous, from `memory_start` to `memory_end`).
    pub spans: Vec<(i64, i64)>,
    /// First token of the first memory.
    pub memory_start: usize,
    /// First token after the last memory.
    pub memory_end: usize,
    /// `fused` mode: memories' states come from the memory-KV cache.
    pub fused: bool,
    /// `fused` mode: share of the memory tokens recomputed, picked by `recompute_rule`.
    pub recompute_ratio: f32,
    /// `fused` mode: which memory tokens are recomputed.
    pub recompute_rule: RecomputeRule,
    /// `fused` mode: per memory, whether it is recomputed whole (not laid in).
    pub recompute_memories: Vec<bool>,
    /// `fused` mode: the calibration of the question's and the answer's attention to the
    /// memories (temperature, scale; 1 and 1: exact).
    pub memory_calibration: (f32, f32),
    /// Memory-KV cache key of each memory.
    pub memory_keys: Vec<u64>,
    /// Id of each memory.
    pub memory_ids: Vec<String>,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Most tokens to generate.
    pub max_new: usize,
    /// Free answers: sentences after which the answer ends (0: no limit).
    pub max_sentences: usize,
    /// The most likely first tokens reported with their log-probabilities (0: none).
    pub first_token_logprobs: usize,
    /// Extractive answers: each memory's tokens and their offsets (decoding is constrained to
    /// spans of them); None: free text.
    pub extract: Option<Vec<super::extract::MemoryTokens>>,
    /// Also score each memory by leaving it out ([`super::ablation`]).
    pub ablation: bool,
    /// When the client stops waiting.
    pub deadline: Option<Instant>,
    /// When the request arrived.
    pub received: Instant,
    /// Where deltas and the final message go.
    pub tx: UnboundedSender<std::result::Result<GenerateResponse, tonic::Status>>,
    /// The request's span.
    pub span: tracing::Span,
}

impl Job {
    /// Whether its client went away or its deadline passed.
    pub(super) fn gone(&self, now: Instant) -> bool {
        self.tx.is_closed() || self.deadline.is_some_and(|d| now >= d)
    }

    /// Fused mode: the calibrated attention of the tokens after the memories, unless exact.
    pub(super) fn calibrate(&self) -> Option<Calibrate> {
        let (temperature, scale) = self.memory_calibration;
        let cal = Calibrate { keys: (self.memory_start as i64, self.memory_end as i64), from: self.memory_end as i64, temperature, scale };
        (self.fused && !cal.is_exact() && self.memory_end > self.memory_start).then_some(cal)
    }

    /// The part of its prompt the prefix cache may hold: in fused mode only the prefix before
    /// the memories (later blocks there hold concat-mode states).
    pub(super) fn cacheable(&self) -> &[u32] {
        if self.fused { &self.prompt[..self.memory_start + 1] } else { &self.prompt[..] }
    }
}

/// A WarmMemories call: memories (cache key and segment tokens) whose states to compute.
pub struct WarmJob {
    /// Prompt tokens before the memories (BOS and the system prompt's start).
    pub prefix: Vec<u32>,
    /// Key ([`super::memcache::memory_key`]) and tokens of each memory.
    pub memories: Vec<(u64, Vec<u32>)>,
    /// Where the outcome goes: memories now cached, and the cache's bytes.
    pub tx: tokio::sync::oneshot::Sender<Result<(u32, u64)>>,
}

/// Work for the model thread.
pub(super) enum Work {
    Generate(Job),
    Warm(WarmJob),
}
