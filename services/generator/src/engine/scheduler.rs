//! The step loop on the model thread (TGI's `scheduler.rs`). Each iteration: take new work,
//! advance a WarmMemories job, drop cancelled sequences, admit waiting jobs as the [`Queue`]
//! allows (their prompt prefix copied from the prefix cache when cached, memories laid in by
//! [`Fused`] in fused mode), then run one ragged step holding one token of every decoding
//! sequence and prompt chunks of the prefilling ones (up to the prefill budget), sample,
//! stream, and retire finished sequences at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use memgpt_models::llama::decoder::Decoder;
use memgpt_models::llama::kv::KvCache;
use memgpt_models::llama::Llama;
use memgpt_models::llama::ragged::{Score, Select, SeqStep};
use memgpt_models::text::tokenizer::TextTokenizer;
use memgpt_proto::generator::v1::{FinishReason, GenerateFinal, GenerateResponse, MemoryAttention, Quote, TokenLogprob, Usage};
use tch::Device;

use super::config::EngineConfig;
use super::disk::DiskTier;
use super::extract::QuoteTokens;
use super::fused::Fused;
use super::job::Work;
use super::prefix::PrefixCache;
use super::queue::Queue;
use super::rescore::Rescore;
use super::sequence::{Pending, Seq};
use super::stats::Stats;

/// One forward pass of a few tokens, so the first request does not pay for lazy set-up.
pub(super) fn warm_up(decoder: &Decoder) -> memgpt_models::Result<()> {
    let _guard = tch::no_grad_guard();
    let c = &decoder.model.config;
    let mut cache = KvCache::uninit(c.n_layer, 1, c.n_head_kv, 8, c.head_dim, decoder.model.kind, decoder.model.device);
    let tokens = decoder.tokenizer.encode("Hello")?;
    let tokens = if tokens.is_empty() { vec![0] } else { tokens };
    let mut step = [SeqStep::new(&tokens[..tokens.len().min(4)], &mut cache)];
    decoder.model.forward_ragged(&mut step, 1)?;
    Ok(())
}

/// The `k` most likely tokens of `logits` with their log-probabilities, most likely first.
fn top_logprobs(logits: &[f32], k: usize) -> Vec<TokenLogprob> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max + logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let k = k.min(order.len());
    order.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(k);
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.into_iter().map(|i| TokenLogprob { token_id: i as u32, logprob: logits[i] - log_sum }).collect()
}

/// A sequence's share of one step.
struct Chunk {
    seq: usize,
    tokens: Vec<u32>,
    /// Positions when they are not the ones right after the cache.
    positions: Option<Vec<i64>>,
    candidates: Vec<bool>,
    /// Candidates to keep past layer 1, when the chunk has any.
    keep: Option<usize>,
    /// Whether the chunk ends the prompt (the sequence emits a token).
    emits: bool,
    /// The attention to report (the query rule's first pass).
    score: Option<Score>,
}

/// What the model thread runs.
pub(super) struct Scheduler {
    model: Llama,
    tokenizer: Arc<TextTokenizer>,
    config: EngineConfig,
    stats: Arc<Stats>,
    abort: Arc<AtomicBool>,
    prefix: PrefixCache,
    fused: Fused,
    queue: Queue,
    running: Vec<Seq>,
    /// What extractive answers need of the vocabulary.
    quote: Arc<QuoteTokens>,
    ttft: memgpt_telemetry::metrics::Histogram,
}

impl Scheduler {
    pub(super) fn new(model: Llama, tokenizer: Arc<TextTokenizer>, config: &EngineConfig, stats: Arc<Stats>, abort: Arc<AtomicBool>, disk: Option<DiskTier>) -> Self {
        let prefix = PrefixCache::new(config.prefix_block_tokens, config.prefix_cache_bytes);
        let ttft = memgpt_telemetry::metrics::histogram(
            "memgpt_generator_ttft_seconds",
            "Time from a request's arrival to its first token.",
            &[],
            memgpt_telemetry::metrics::SECONDS_BUCKETS,
        );
        let fused = Fused::new(config.memory_cache_bytes, config.recompute_head_tokens, config.max_batch_prefill_tokens, Arc::clone(&stats), disk);
        let queue = Queue::new(config.max_batch, config.max_kv_tokens, Arc::clone(&stats));
        let quote = Arc::new(QuoteTokens::new(&tokenizer));
        Self { model, tokenizer, config: config.clone(), stats, abort, prefix, fused, queue, running: Vec::new(), quote, ttft }
    }

    fn take(&mut self, work: Work) {
        match work {
            Work::Generate(job) => self.queue.push(job),
            Work::Warm(job) => self.fused.warm(job),
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Work>) {
        let _guard = tch::no_grad_guard();
        let mut open = true;
        loop {
            if open && self.running.is_empty() && self.queue.is_empty() && self.fused.idle() {
                match rx.recv() {
                    Ok(work) => self.take(work),
                    Err(_) => open = false,
                }
            }
            while open {
                match rx.try_recv() {
                    Ok(work) => self.take(work),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if self.abort.load(Ordering::SeqCst) {
                self.cancel_everything();
                return;
            }
            self.fused.warm_some(&self.model, &mut self.prefix);
            self.drop_cancelled();
            self.admit();
            if self.running.is_empty() {
                if !open && self.queue.is_empty() && self.fused.idle() {
                    return;
                }
                continue;
            }
            if let Err(err) = self.step() {
                tracing::error!(error = %err, batch = self.running.len(), "model step failed; failing its sequences");
                for seq in std::mem::take(&mut self.running) {
                    let _ = seq.job.tx.send(Err(tonic::Status::internal(format!("model step failed: {err}"))));
                    self.queue.release(seq.reserved);
                }
            }
        }
    }

    fn cancel_everything(&mut self) {
        self.fused.cancel_all();
        self.queue.cancel_all();
        for i in (0..self.running.len()).rev() {
            self.finish(i, FinishReason::Cancelled, None);
        }
    }

    fn drop_cancelled(&mut self) {
        let now = Instant::now();
        self.queue.drop_expired(now);
        for i in (0..self.running.len()).rev() {
            if self.running[i].job.gone(now) {
                self.finish(i, FinishReason::Cancelled, None);
            }
        }
    }

    fn admit(&mut self) {
        while let Some((job, reserved)) = self.queue.admit(self.running.len()) {
            let c = &self.model.config;
            let vocab = c.vocab_size as usize;
            let mut cache = KvCache::uninit(c.n_layer, 1, c.n_head_kv, reserved as i64, c.head_dim, self.model.kind, self.model.device);
            let prefilled = self.prefix.fill(job.cacheable(), &mut cache);
            self.stats.prefix_hit_tokens.fetch_add(prefilled as u64, Ordering::Relaxed);
            let pending = if job.fused {
                match self.fused.lay_memories(&self.model, &job, &mut cache, prefilled) {
                    Ok(plan) => plan,
                    Err(err) => {
                        tracing::error!(parent: &job.span, error = %err, "memory states failed");
                        let _ = job.tx.send(Err(tonic::Status::internal(format!("memory states failed: {err}"))));
                        self.queue.release(reserved);
                        continue;
                    }
                }
            } else {
                VecDeque::from([Pending { from: prefilled, to: job.prompt.len(), candidate: false }])
            };
            tracing::debug!(parent: &job.span, prompt_tokens = job.prompt.len(), prefix_hit_tokens = prefilled, fused = job.fused, batch = self.running.len() + 1, "admitted");
            let mut seq = Seq::new(job, cache, pending, vocab, &self.quote, reserved);
            seq.rescore = Rescore::of(&seq.job, self.config.recompute_head_tokens);
            self.running.push(seq);
        }
    }

    /// One ragged step over the running batch.
    fn step(&mut self) -> memgpt_models::Result<()> {
        let mut budget = self.config.max_batch_prefill_tokens;
        let layers = self.model.config.n_layer as f32;
        // Per sequence in the step: its index, new tokens, their positions when they are not
        // the ones right after the cache (fused mode: several ranges around laid-in memory
        // states, computed together), and whether it emits a token.
        let mut chunks: Vec<Chunk> = Vec::new();
        for (i, seq) in self.running.iter_mut().enumerate() {
            let Seq { job, cache, pending, input, rescore, .. } = seq;
            if pending.is_empty() {
                chunks.push(Chunk { seq: i, tokens: input.to_vec(), positions: None, candidates: Vec::new(), keep: None, emits: true, score: None });
                continue;
            }
            let (mut tokens, mut positions, mut candidates) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(range) = pending.front_mut() {
                if budget == 0 {
                    break;
                }
                // A candidate of the selective recompute costs layers 0 and 1, and the
                // ratio kept of the rest.
                let weight = if range.candidate { (job.recompute_ratio + 2.0 / layers).min(1.0) } else { 1.0 };
                let n = (range.to - range.from).min((budget as f32 / weight) as usize);
                if n == 0 {
                    break;
                }
                budget -= ((n as f32 * weight).ceil() as usize).min(budget);
                tokens.extend_from_slice(&job.prompt[range.from..range.from + n]);
                positions.extend(range.from as i64..(range.from + n) as i64);
                candidates.extend(std::iter::repeat_n(range.candidate, n));
                range.from += n;
                if range.from < range.to {
                    break;
                }
                pending.pop_front();
            }
            if tokens.is_empty() {
                continue;
            }
            let contiguous = positions[0] == cache.len() && positions[positions.len() - 1] - positions[0] + 1 == positions.len() as i64;
            // Of the laid-in memory tokens in this chunk, the most deviating share is kept.
            let offered = candidates.iter().filter(|&&c| c).count();
            let keep = (offered > 0).then(|| (offered as f32 * job.recompute_ratio).ceil() as usize);
            // The query rule's first pass ends without a token: the second pass answers.
            let emits = pending.is_empty() && rescore.is_none();
            let score = rescore.as_ref().map(|r| r.score());
            chunks.push(Chunk { seq: i, tokens, positions: (!contiguous).then_some(positions), candidates, keep, emits, score });
        }
        let rows: Vec<(usize, bool)> = chunks.iter().map(|c| (c.seq, c.emits)).collect();
        let mut steps = Vec::with_capacity(chunks.len());
        let mut next = chunks.iter().peekable();
        for (i, seq) in self.running.iter_mut().enumerate() {
            let Some(chunk) = next.next_if(|c| c.seq == i) else { continue };
            let Seq { job, cache, .. } = seq;
            let spans: &[(i64, i64)] = if chunk.emits { &job.spans } else { &[] };
            let select = chunk.keep.map(|keep| Select { candidates: &chunk.candidates, keep });
            steps.push(SeqStep { tokens: &chunk.tokens, cache, spans, positions: chunk.positions.as_deref(), select, score: chunk.score, calibrate: job.calibrate() });
        }
        let out = self.model.forward_ragged(&mut steps, self.config.attribution_layers)?;
        drop(steps);
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let vocab = out.logits.size()[1] as usize;
        let mut logits: Vec<f32> = Vec::try_from(out.logits.to_device(Device::Cpu).flatten(0, -1))?;
        let mut finished = Vec::new();
        for (row, &(i, emits)) in rows.iter().enumerate() {
            if !emits {
                self.after_first_pass(i, &out.scores[row]);
                continue;
            }
            let seq = &mut self.running[i];
            if seq.generated.is_empty() {
                self.prefix.insert(seq.job.cacheable(), &seq.cache);
            }
            for (acc, s) in seq.shares.iter_mut().zip(&out.shares[row]) {
                *acc += s;
            }
            seq.share_steps += 1;
            let row_logits = &mut logits[row * vocab..(row + 1) * vocab];
            // The likelihood the ablation compares with is the model's own, before any
            // constraint or penalty: the token is scored once it is chosen (below).
            let raw = seq.job.ablation.then(|| row_logits.to_vec());
            if seq.generated.is_empty() && seq.job.first_token_logprobs > 0 {
                seq.first_logprobs = top_logprobs(row_logits, seq.job.first_token_logprobs);
            }
            if let Some(x) = &mut seq.extract {
                if seq.generated.is_empty() && self.config.extractive_focus {
                    x.focus(&out.shares[row]);
                }
                x.mask(row_logits);
            }
            let token = seq.sampler.sample(row_logits);
            let eos = self.tokenizer.eos.contains(&token) || seq.extract.as_ref().is_some_and(|x| x.ends(token));
            if let Some(raw) = raw.filter(|_| !eos && seq.generated.len() < super::ablation::MAX_TOKENS) {
                seq.loglik += super::ablation::log_prob(&raw, token);
            }
            seq.generated.push(token);
            self.stats.tokens_generated.fetch_add(1, Ordering::Relaxed);
            if seq.first_token_at.is_none() {
                let now = Instant::now();
                seq.first_token_at = Some(now);
                let ttft = now.duration_since(seq.job.received);
                self.stats.ttft_us_total.fetch_add(ttft.as_micros() as u64, Ordering::Relaxed);
                self.ttft.observe(ttft.as_secs_f64());
            }
            if eos {
                finished.push((i, FinishReason::Eos, None));
                continue;
            }
            let text = self.tokenizer.decode(&seq.generated)?;
            let text = match &mut seq.extract {
                Some(x) => {
                    x.advance(token);
                    text.trim_start().to_string()
                }
                None => text,
            };
            let update = seq.text.update(&text);
            if !update.delta.is_empty() {
                let _ = seq.job.tx.send(Ok(GenerateResponse { delta: update.delta, r#final: None }));
            }
            if let Some(final_text) = update.stopped {
                finished.push((i, FinishReason::Stop, Some(final_text)));
            } else if seq.extract.as_ref().is_some_and(|x| x.exhausted()) {
                // The span reached the end of its memory.
                finished.push((i, FinishReason::Eos, None));
            } else if seq.generated.len() >= seq.job.max_new {
                finished.push((i, FinishReason::Length, None));
            } else {
                seq.input = [token];
            }
        }
        // Highest index first, so removals keep the other indices valid.
        finished.sort_by(|a, b| b.0.cmp(&a.0));
        for (i, reason, text) in finished {
            self.finish(i, reason, text);
        }
        Ok(())
    }

    /// Adds a query-rule first pass's scores to sequence `i`; when the pass is done, plans
    /// the second (the chosen memory positions and the question), computed from the next step.
    fn after_first_pass(&mut self, i: usize, scores: &[f32]) {
        let seq = &mut self.running[i];
        let Some(rescore) = seq.rescore.as_mut() else { return };
        rescore.add(scores);
        if !seq.pending.is_empty() {
            return;
        }
        let (plan, reused) = rescore.plan(seq.job.prompt.len());
        seq.rescore = None;
        // The second pass rewrites positions from its first on.
        seq.cache.set_filled(plan.front().map_or(seq.job.prompt.len(), |p| p.from) as i64);
        seq.pending = plan;
        self.stats.memory_tokens_reused.fetch_add(reused as u64, Ordering::Relaxed);
        tracing::debug!(parent: &seq.job.span, reused_tokens = reused, "memory tokens chosen by the question");
    }

    /// Each memory's attention share, normalised over the memories (they sum to 1), and its
    /// ablation score when asked for; and the share the prompt around the memories took.
    fn attribution(&self, seq: &Seq, reason: FinishReason, answer: &[u32]) -> (Vec<MemoryAttention>, f32) {
        let steps = seq.share_steps.max(1) as f32;
        let on_memories: f32 = seq.shares.iter().sum::<f32>() / steps;
        let prompt_share = if seq.shares.is_empty() { 0.0 } else { (1.0 - on_memories).clamp(0.0, 1.0) };
        let mut ablation = vec![None; seq.shares.len()];
        if seq.job.ablation && reason != FinishReason::Cancelled {
            match super::ablation::scores(&self.model, &seq.job.prompt, &seq.job.spans, &seq.cache, answer, seq.loglik) {
                Ok(scores) => ablation = scores.into_iter().map(Some).collect(),
                Err(err) => tracing::warn!(parent: &seq.job.span, error = %err, "ablation failed; attention shares only"),
            }
        }
        let share = |s: f32| if on_memories > 0.0 { s / steps / on_memories } else { 0.0 };
        let attention = seq
            .job
            .memory_ids
            .iter()
            .zip(&seq.shares)
            .zip(ablation)
            .map(|((id, &s), ablation)| MemoryAttention { memory_id: id.clone(), share: share(s), ablation })
            .collect();
        (attention, prompt_share)
    }

    /// Sends the final message of sequence `i` and frees its slot.
    fn finish(&mut self, i: usize, reason: FinishReason, stopped_text: Option<String>) {
        let mut seq = self.running.swap_remove(i);
        let now = Instant::now();
        let ended = |t: &u32| self.tokenizer.eos.contains(t) || seq.extract.as_ref().is_some_and(|x| x.ends(*t));
        let answer: Vec<u32> = seq.generated.iter().copied().filter(|t| !ended(t)).collect();
        let span = seq.extract.as_ref().and_then(|x| x.span());
        let (text, quote) = match (&seq.extract, span, stopped_text) {
            (Some(x), Some(span), _) => {
                let quote = Quote { memory_id: seq.job.memory_ids[span.memory].clone(), memory_index: span.memory as u32, start: span.start as u32, end: span.end as u32 };
                (x.quoted(span), Some(quote))
            }
            (_, _, Some(t)) => (t, None),
            _ => (self.tokenizer.decode(&answer).unwrap_or_default(), None),
        };
        let delta = if reason == FinishReason::Stop { String::new() } else { seq.text.finish(&text) };
        let (attention, prompt_share) = self.attribution(&seq, reason, &answer);
        let ttft_ms = seq.first_token_at.map(|t| t.duration_since(seq.job.received).as_secs_f64() * 1e3).unwrap_or(0.0);
        let decode_ms = seq.first_token_at.map(|t| now.duration_since(t).as_secs_f64() * 1e3).unwrap_or(0.0);
        let usage = Usage { prompt_tokens: seq.job.prompt.len() as u32, completion_tokens: seq.generated.len() as u32 };
        tracing::info!(
            parent: &seq.job.span,
            finish = reason.as_str_name(),
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            ttft_ms,
            decode_ms,
            "generation finished"
        );
        let first_token_logprobs = std::mem::take(&mut seq.first_logprobs);
        let last = GenerateFinal { text, finish_reason: reason as i32, usage: Some(usage), attention, ttft_ms, decode_ms, quote, prompt_share, first_token_logprobs };
        let _ = seq.job.tx.send(Ok(GenerateResponse { delta, r#final: Some(last) }));
        if reason == FinishReason::Cancelled {
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.finished.fetch_add(1, Ordering::Relaxed);
        }
        self.queue.release(seq.reserved);
    }
}
