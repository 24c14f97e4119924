//! The engine: the decoder on its own thread, fed by a queue of jobs, running a
//! continuous-batching scheduler (see [`batch`]). Async code never blocks on tensor work; it
//! submits a [`Job`] and reads the job's response channel.

mod batch;
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
    /// Token span of each memory.
    pub spans: Vec<(i64, i64)>,
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
}

/// The running engine.
pub struct Engine {
    tx: Mutex<Option<Sender<Job>>>,
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
}

impl Engine {
    /// Loads the model on a new thread, runs a warm-up step, and returns once it is ready
    /// (blocking: call it from a blocking context).
    pub fn start(config: EngineConfig) -> Result<Self> {
        let (tx, rx) = channel::<Job>();
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
        let sender = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match sender.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => {
                self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(GeneratorError::Unavailable("the generator is shutting down".into()))
            }
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
