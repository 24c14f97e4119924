//! The engine: the decoder on its own thread, fed by a queue of jobs, running a
//! continuous-batching scheduler (see [`batch`]). Async code never blocks on tensor work; it
//! submits a [`Job`] and reads the job's response channel.

mod batch;
mod fused;
pub mod memcache;
pub mod prefix;
pub mod sampling;
pub mod text;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use memgpt_models::chat::ChatTemplate;
use memgpt_models::decoder::Decoder;
use memgpt_models::tokenizer::TextTokenizer;
use memgpt_proto::generator::v1::GenerateResponse;
use tch::{Device, Kind};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{GeneratorError, Result};
use sampling::SamplingParams;

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// GGUF file or Hugging Face folder.
    pub model: PathBuf,
    /// Compute device.
    pub device: Device,
    /// Compute dtype.
    pub kind: Kind,
    /// Intra-op threads (0: default).
    pub threads: usize,
    /// Most sequences in the running batch.
    pub max_batch: usize,
    /// Most prompt tokens prefilled per step.
    pub max_batch_prefill_tokens: usize,
    /// Most KV tokens reserved at once.
    pub max_kv_tokens: u64,
    /// Most jobs waiting for a slot.
    pub max_waiting: usize,
    /// Last layers the memory shares average over.
    pub attribution_layers: usize,
    /// Prefix-cache budget in bytes.
    pub prefix_cache_bytes: u64,
    /// Tokens per prefix-cache block.
    pub prefix_block_tokens: usize,
    /// Memory-KV cache budget in bytes (`fused` mode).
    pub memory_cache_bytes: u64,
    /// Leading tokens of each cached memory recomputed in place in `fused` mode.
    pub recompute_head_tokens: usize,
}

/// What the loaded model is.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// Device name.
    pub device: String,
    /// Dtype name.
    pub dtype: String,
    /// Context length in tokens.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab: usize,
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
    /// `fused` mode: share of each memory's tokens past its head recomputed (most deviating).
    pub recompute_ratio: f32,
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
    /// When the client stops waiting.
    pub deadline: Option<Instant>,
    /// When the request arrived.
    pub received: Instant,
    /// Where deltas and the final message go.
    pub tx: UnboundedSender<std::result::Result<GenerateResponse, tonic::Status>>,
    /// The request's span.
    pub span: tracing::Span,
}

/// A WarmMemories call: memories (cache key and segment tokens) whose states to compute.
pub struct WarmJob {
    /// Prompt tokens before the memories (BOS and the system prompt's start).
    pub prefix: Vec<u32>,
    /// Key ([`memcache::memory_key`]) and tokens of each memory.
    pub memories: Vec<(u64, Vec<u32>)>,
    /// Where the outcome goes: memories now cached, and the cache's bytes.
    pub tx: tokio::sync::oneshot::Sender<Result<(u32, u64)>>,
}

/// Work for the model thread.
pub(crate) enum Work {
    Generate(Job),
    Warm(WarmJob),
}

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
}

/// The running engine.
pub struct Engine {
    tx: Mutex<Option<Sender<Work>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    abort: Arc<AtomicBool>,
    max_waiting: usize,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The model's tokeniser.
    pub tokenizer: Arc<TextTokenizer>,
    /// The model's chat template.
    pub template: Arc<ChatTemplate>,
    /// What the model is.
    pub info: ModelInfo,
}

fn dtype_name(kind: Kind) -> String {
    match kind {
        Kind::BFloat16 => "bf16".into(),
        Kind::Half => "f16".into(),
        _ => "f32".into(),
    }
}

/// Exposes the engine's counters as Prometheus metrics (read at scrape time).
fn register_metrics(stats: &Arc<Stats>) {
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
    callback("memgpt_generator_memory_tokens_reused_total", "Prompt tokens taken from the memory-KV cache instead of prefilled.", "counter", &[], read(|s| &s.memory_tokens_reused));
}

impl Engine {
    /// Loads the model on a new thread, runs a warm-up step, and returns once it is ready
    /// (blocking: call it from a blocking context).
    pub fn start(config: EngineConfig) -> Result<Self> {
        let (tx, rx) = channel::<Work>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let stats = Arc::new(Stats::default());
        let abort = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, abort, config) = (Arc::clone(&stats), Arc::clone(&abort), config.clone());
            std::thread::Builder::new()
                .name("generator-model".into())
                .spawn(move || {
                    if config.threads > 0 {
                        tch::set_num_threads(config.threads as i32);
                    }
                    let loaded = Decoder::load(&config.model, config.device, config.kind).and_then(|d| batch::warm_up(&d).map(|()| d));
                    let decoder = match loaded {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let Decoder { model, tokenizer, template, name } = decoder;
                    let tokenizer = Arc::new(tokenizer);
                    let info = ModelInfo {
                        name,
                        device: memgpt_models::device::device_name(model.device),
                        dtype: dtype_name(model.kind),
                        context_length: model.config.context_length as usize,
                        vocab: model.config.vocab_size as usize,
                    };
                    let _ = ready_tx.send(Ok((Arc::clone(&tokenizer), Arc::new(template), info)));
                    batch::Scheduler::new(model, tokenizer, &config, stats, abort).run(rx);
                })
                .map_err(|e| GeneratorError::Internal(format!("cannot start the model thread: {e}")))?
        };
        let (tokenizer, template, info) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e.into());
            }
            Err(_) => {
                let _ = thread.join();
                return Err(GeneratorError::Internal("the model thread stopped while loading".into()));
            }
        };
        register_metrics(&stats);
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            abort,
            max_waiting: config.max_waiting,
            stats,
            tokenizer,
            template,
            info,
        })
    }

    /// Queues a job, or refuses it at once when the waiting queue is full.
    pub fn submit(&self, job: Job) -> Result<()> {
        let waiting = self.stats.waiting.fetch_add(1, Ordering::SeqCst) as usize;
        if waiting >= self.max_waiting {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            // About one decode step per waiting request ahead, at least 50 ms.
            return Err(GeneratorError::Overloaded { waiting, retry_after_ms: (waiting as u64 * 10).max(50) });
        }
        match self.send(Work::Generate(job)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Queues a WarmMemories job; its outcome arrives on the job's channel.
    pub fn warm(&self, job: WarmJob) -> Result<()> {
        self.send(Work::Warm(job))
    }

    fn send(&self, work: Work) -> Result<()> {
        let sender = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match sender.as_ref().map(|tx| tx.send(work)) {
            Some(Ok(())) => Ok(()),
            _ => Err(GeneratorError::Unavailable("the generator is shutting down".into())),
        }
    }

    /// Stops taking jobs; running ones finish (or, with `abort`, end as cancelled at the next
    /// step). Joins the model thread.
    pub fn shutdown(&self, abort: bool) {
        self.abort.store(abort, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(true);
    }
}
