//! A running sequence: its job, its KV cache, the prompt positions it still has to compute,
//! its sampler and text stream, and the attention shares gathered while it decodes.

use std::collections::VecDeque;
use std::time::Instant;

use memgpt_models::llama::kv::KvCache;

use std::sync::Arc;

use super::extract::{Extract, QuoteTokens};
use memgpt_proto::generator::v1::TokenLogprob;

use super::job::Job;
use super::rescore::Rescore;
use super::sampling::Sampler;
use super::text::TextStream;

/// Prompt positions `[from, to)` a sequence still has to compute; `candidate`: memory tokens
/// laid in from cached states that the selective recompute may leave as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) candidate: bool,
}

/// A sequence of the running batch.
pub(super) struct Seq {
    pub(super) job: Job,
    pub(super) cache: KvCache,
    /// Prompt positions still to compute, in order (one range in `concat` mode; in `fused`
    /// mode the gaps are memory states laid in from the memory-KV cache).
    pub(super) pending: VecDeque<Pending>,
    /// Fused mode, query rule: the first pass's scores, until the second pass is planned.
    pub(super) rescore: Option<Rescore>,
    /// The token the next decode step feeds.
    pub(super) input: [u32; 1],
    pub(super) generated: Vec<u32>,
    pub(super) sampler: Sampler,
    pub(super) text: TextStream,
    /// Attention share of each memory, summed over the steps that emitted a token.
    pub(super) shares: Vec<f32>,
    pub(super) share_steps: u32,
    /// Extractive answers: the constraint.
    pub(super) extract: Option<Extract>,
    /// The most likely first tokens, when asked for.
    pub(super) first_logprobs: Vec<TokenLogprob>,
    /// Log-likelihood of the first generated tokens (ablation only).
    pub(super) loglik: f64,
    pub(super) first_token_at: Option<Instant>,
    /// KV tokens reserved for it at admission (prompt and new tokens).
    pub(super) reserved: u64,
}

impl Seq {
    /// A sequence admitted with `cache` (partly filled) and the positions still `pending`.
    pub(super) fn new(mut job: Job, cache: KvCache, pending: VecDeque<Pending>, vocab: usize, quote: &Arc<QuoteTokens>, reserved: u64) -> Self {
        let sampler = Sampler::new(job.sampling.clone(), vocab, &job.prompt);
        let extract = job.extract.take().map(|memories| Extract::new(memories, Arc::clone(quote)));
        // An extractive answer is a span: stop strings and the sentence budget do not cut it.
        let text = if extract.is_some() { TextStream::new(Vec::new(), 0) } else { TextStream::new(job.stop.clone(), job.max_sentences) };
        let shares = vec![0.0; job.spans.len()];
        Self { job, cache, pending, rescore: None, input: [0], generated: Vec::new(), sampler, text, shares, share_steps: 0, extract, first_logprobs: Vec::new(), loglik: 0.0, first_token_at: None, reserved }
    }
}
