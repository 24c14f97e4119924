//! The encoder on its own thread: it owns the model, takes batches over a bounded queue (each
//! with the caller's span and a reply channel), and publishes readiness on a `watch`. Async
//! code never blocks on tensor work. Dropping the handle stops and joins the thread.

pub mod bert;

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tch::Device;
use tokio::sync::{oneshot, watch};

use crate::encoder::bert::{Bert, Precision};
use crate::error::{ModelError, Result};

/// Encoder configuration.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// Model folder.
    pub dir: PathBuf,
    /// Device.
    pub device: Device,
    /// Compute mode.
    pub precision: Precision,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Requests that may wait; beyond it `Overloaded`.
    pub queue: usize,
    /// Intra-op threads for tch (0: tch's default).
    pub threads: usize,
}

struct Job {
    texts: Vec<String>,
    span: tracing::Span,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

/// Handle to the encoder thread.
pub struct EncoderHandle {
    tx: Option<SyncSender<Job>>,
    ready: watch::Receiver<Option<std::result::Result<(), String>>>,
    thread: Option<JoinHandle<()>>,
    queue: usize,
    /// Output dimension, known once loaded.
    dim: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EncoderHandle {
    /// Starts the thread; the model loads there. Await [`EncoderHandle::wait_ready`].
    pub fn spawn(config: EncoderConfig) -> Self {
        let (tx, rx) = sync_channel::<Job>(config.queue.max(1));
        let (ready_tx, ready) = watch::channel(None);
        let dim = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let dim_out = dim.clone();
        let queue = config.queue;
        let thread = std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                if config.threads > 0 {
                    tch::set_num_threads(config.threads as i32);
                }
                let model = match Bert::load(&config.dir, config.device, config.precision) {
                    Ok(m) => m,
                    Err(err) => {
                        tracing::error!(error = %err, "encoder failed to load");
                        let _ = ready_tx.send(Some(Err(err.to_string())));
                        return;
                    }
                };
                dim_out.store(model.dim as usize, std::sync::atomic::Ordering::SeqCst);
                // Warm-up pass, so the first request does not pay for lazy initialisation.
                let _ = model.embed(&["warm up".to_string()], 1);
                tracing::info!(dir = %config.dir.display(), dim = model.dim, "encoder ready");
                let _ = ready_tx.send(Some(Ok(())));
                // Micro-batching: jobs queued while the model was busy are encoded together
                // (up to one batch of texts), so concurrent small requests share a pass.
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    let mut texts = jobs[0].texts.len();
                    while texts < config.batch_size {
                        match rx.try_recv() {
                            Ok(job) => {
                                texts += job.texts.len();
                                jobs.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    let started = std::time::Instant::now();
                    let all: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
                    let result = model.embed(&all, config.batch_size);
                    tracing::debug!(texts = all.len(), jobs = jobs.len(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "encoded");
                    match result {
                        Ok(mut vectors) => {
                            for job in jobs {
                                let rest = vectors.split_off(job.texts.len().min(vectors.len()));
                                let _enter = job.span.enter();
                                let _ = job.reply.send(Ok(std::mem::replace(&mut vectors, rest)));
                            }
                        }
                        Err(err) => {
                            let message = err.to_string();
                            for job in jobs {
                                let _ = job.reply.send(Err(ModelError::Torch(message.clone())));
                            }
                        }
                    }
                }
            })
            .expect("spawn the encoder thread");
        Self { tx: Some(tx), ready, thread: Some(thread), queue, dim }
    }

    /// Waits until the model is loaded (or failed to load).
    pub async fn wait_ready(&self) -> Result<()> {
        let mut ready = self.ready.clone();
        let state = ready.wait_for(Option::is_some).await.map_err(|_| ModelError::Stopped)?;
        match state.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(ModelError::Torch(format!("encoder failed to load: {e}"))),
            None => unreachable!(),
        }
    }

    /// Whether the model is loaded.
    pub fn is_ready(&self) -> bool {
        matches!(*self.ready.borrow(), Some(Ok(())))
    }

    /// Output dimension (0 until loaded).
    pub fn dim(&self) -> usize {
        self.dim.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Embeds texts (unit vectors, in order). Fails at once when the queue is full.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let (reply, rx) = oneshot::channel();
        let job = Job { texts, span: tracing::Span::current(), reply };
        match self.tx.as_ref().ok_or(ModelError::Stopped)?.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ModelError::Overloaded(self.queue)),
            Err(TrySendError::Disconnected(_)) => return Err(ModelError::Stopped),
        }
        rx.await.map_err(|_| ModelError::Stopped)?
    }
}

impl Drop for EncoderHandle {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
