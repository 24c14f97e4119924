//! The engine: the decoder on its own thread, fed by a channel of work. Async code never
//! blocks on tensor work; it submits a [`Job`] and reads the job's response channel.
//!
//! On the model thread, as in TGI's router: [`queue`] admits waiting jobs against the batch and
//! KV budgets, [`scheduler`] runs the step loop (continuous batching), [`sequence`] holds a
//! running sequence's state, [`fused`] lays memories' cached states in (it owns the memory-KV
//! cache, [`memcache`]), [`prefix`] is the prompt-prefix cache, [`sampling`] and [`text`] turn
//! logits into streamed text, [`extract`] constrains an extractive answer to memory spans and
//! [`ablation`] scores memories by leaving each out.

mod ablation;
mod config;
mod disk;
pub mod extract;
mod fused;
mod job;
pub mod memcache;
pub mod prefix;
mod rescore;
mod queue;
pub mod sampling;
mod scheduler;
mod sequence;
mod stats;
pub mod text;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use memgpt_models::text::chat::ChatTemplate;
use memgpt_models::llama::decoder::Decoder;
use memgpt_models::text::tokenizer::TextTokenizer;
use tch::Kind;

pub use config::{EngineConfig, ModelInfo};
pub use job::{Job, RecomputeRule, WarmJob};
use job::Work;
pub use stats::Stats;
use crate::error::{GeneratorError, Result};

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

/// The memory-KV cache's disk tier, when a directory is configured.
fn open_disk(config: &EngineConfig, kind: Kind, stats: &Arc<Stats>) -> Result<Option<disk::DiskTier>> {
    let Some(dir) = &config.memory_cache_dir else { return Ok(None) };
    let model = disk::model_digest(&config.model, kind).map_err(|e| GeneratorError::Internal(format!("cannot read the model {} to key the disk tier: {e}", config.model.display())))?;
    disk::DiskTier::open(dir, config.memory_cache_disk_bytes, model, Arc::clone(stats)).map(Some)
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
                    let loaded = Decoder::load(&config.model, config.device, config.kind).and_then(|d| scheduler::warm_up(&d).map(|()| d));
                    let decoder = match loaded {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let disk = match open_disk(&config, decoder.model.kind, &stats) {
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
                    scheduler::Scheduler::new(model, tokenizer, &config, stats, abort, disk).run(rx);
                })
                .map_err(|e| GeneratorError::Internal(format!("cannot start the model thread: {e}")))?
        };
        let (tokenizer, template, info) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(GeneratorError::Internal("the model thread stopped while loading".into()));
            }
        };
        stats::register_metrics(&stats);
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
