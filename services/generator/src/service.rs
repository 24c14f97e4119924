//! The `memgpt.generator.v1.Generator` gRPC adapter: validate, build the prompt off the async
//! threads, check it against the context, and hand a job to the engine.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use memgpt_proto::generator::v1::generator_server::Generator;
use memgpt_proto::generator::v1::{
    AttendMode, GenerateRequest, GenerateResponse, InfoRequest, InfoResponse, WarmMemoriesRequest, WarmMemoriesResponse,
};
use tokio::sync::OnceCell;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::config::GeneratorConfig;
use crate::error::{GeneratorError, Result};
use crate::prompt;
use crate::engine::memcache::memory_key;
use crate::engine::{Engine, Job, WarmJob};
use crate::validate;

/// Where the engine appears once loaded.
pub type EngineSlot = Arc<OnceCell<Arc<Engine>>>;

/// The Generator service.
pub struct GeneratorService {
    engine: EngineSlot,
    config: Arc<GeneratorConfig>,
}

impl GeneratorService {
    /// A service over the engine slot.
    pub fn new(engine: EngineSlot, config: Arc<GeneratorConfig>) -> Self {
        Self { engine, config }
    }

    fn engine(&self) -> Result<Arc<Engine>> {
        self.engine.get().cloned().ok_or_else(|| GeneratorError::Unavailable("the model is still loading".into()))
    }

    async fn start(&self, request: Request<GenerateRequest>) -> Result<UnboundedReceiverStream<std::result::Result<GenerateResponse, Status>>> {
        let received = Instant::now();
        let deadline = validate::deadline(request.metadata());
        let req = request.into_inner();
        let checked = validate::check(&req, &self.config)?;
        let engine = self.engine()?;
        let built = {
            let (engine, config, checked) = (Arc::clone(&engine), Arc::clone(&self.config), checked.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let mut built = prompt::build(&engine.tokenizer, &engine.template, &checked.messages, &checked.memory_texts, &config.memory_instruction)?;
                let mut extract = if checked.extractive { Some(prompt::memory_tokens(&engine.tokenizer, &checked.memory_texts, &built)?) } else { None };
                let question = checked.messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.as_str());
                if let (Some(memories), Some(question), true) = (&mut extract, question, config.extractive_guided) {
                    memories.iter_mut().for_each(|m| m.guide(question));
                }
                if checked.extractive {
                    built.tokens.extend(prompt::quote_lead(&engine.tokenizer)?);
                }
                Ok((built, extract))
            })
            .await
            .map_err(|e| GeneratorError::Internal(format!("prompt task: {e}")))??
        };
        let (built, extract) = built;
        let context = engine.info.context_length;
        let needed = built.tokens.len() + checked.max_new;
        if needed > context {
            return Err(GeneratorError::invalid(
                "prompt",
                format!("{} prompt tokens plus max_new_tokens {} exceed the context length {context}", built.tokens.len(), checked.max_new),
            ));
        }
        if needed as u64 > self.config.max_kv_tokens {
            return Err(GeneratorError::invalid(
                "prompt",
                format!("{} prompt tokens plus max_new_tokens {} exceed the server's KV budget of {} tokens", built.tokens.len(), checked.max_new, self.config.max_kv_tokens),
            ));
        }
        let span = tracing::info_span!(
            "generate",
            prompt_tokens = built.tokens.len(),
            memories = checked.memory_ids.len(),
            fused = checked.fused,
            recompute_ratio = checked.recompute_ratio.unwrap_or(self.config.recompute_ratio),
            max_new_tokens = checked.max_new,
            extractive = checked.extractive,
            ablation = checked.ablation,
            temperature = checked.sampling.temperature
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let memory_keys = checked.memory_ids.iter().zip(&checked.memory_texts).map(|(id, text)| memory_key(id, text)).collect();
        engine.submit(Job {
            prompt: built.tokens,
            spans: built.spans,
            memory_start: built.memory_start,
            memory_end: built.memory_end,
            fused: checked.fused,
            recompute_ratio: checked.recompute_ratio.unwrap_or(self.config.recompute_ratio),
            recompute_rule: checked.recompute_rule.unwrap_or(self.config.recompute_rule),
            recompute_memories: checked.recompute_memories,
            memory_calibration: (checked.memory_temperature.unwrap_or(self.config.memory_temperature), checked.memory_scale.unwrap_or(self.config.memory_scale)),
            memory_keys,
            memory_ids: checked.memory_ids,
            sampling: checked.sampling,
            stop: checked.stop,
            max_new: checked.max_new,
            max_sentences: checked.max_sentences,
            first_token_logprobs: checked.first_token_logprobs,
            extract,
            ablation: checked.ablation,
            deadline,
            received,
            tx,
            span,
        })?;
        Ok(UnboundedReceiverStream::new(rx))
    }

    async fn warm(&self, req: WarmMemoriesRequest) -> Result<WarmMemoriesResponse> {
        if req.memories.is_empty() {
            return Err(GeneratorError::invalid("memories", "the request has no memories"));
        }
        if req.memories.len() > self.config.max_warm_memories {
            return Err(GeneratorError::invalid("memories", format!("{} memories exceed the limit of {}", req.memories.len(), self.config.max_warm_memories)));
        }
        validate::check_memories(&req.memories, &self.config)?;
        let engine = self.engine()?;
        let (prefix, memories) = {
            let (engine, config) = (Arc::clone(&engine), Arc::clone(&self.config));
            tokio::task::spawn_blocking(move || -> Result<(Vec<u32>, Vec<(u64, Vec<u32>)>)> {
                let prefix = prompt::prefix(&engine.tokenizer, &engine.template, &req.system, &config.memory_instruction)?;
                let context = engine.info.context_length;
                let mut out = Vec::with_capacity(req.memories.len());
                for (i, m) in req.memories.iter().enumerate() {
                    let tokens = prompt::memory_segment(&engine.tokenizer, &m.text)?;
                    if prefix.len() + tokens.len() >= context {
                        return Err(GeneratorError::invalid(format!("memories[{i}].text"), format!("{} tokens exceed the context length {context}", tokens.len())));
                    }
                    out.push((memory_key(&m.id, &m.text), tokens));
                }
                Ok((prefix, out))
            })
            .await
            .map_err(|e| GeneratorError::Internal(format!("tokenising memories: {e}")))??
        };
        let count = memories.len();
        let (tx, rx) = tokio::sync::oneshot::channel();
        engine.warm(WarmJob { prefix, memories, tx })?;
        let (cached, bytes) = rx.await.map_err(|_| GeneratorError::Unavailable("the generator stopped while warming memories".into()))??;
        tracing::info!(memories = count, cached, cache_bytes = bytes, "memories warmed");
        Ok(WarmMemoriesResponse { cached, bytes })
    }
}

#[tonic::async_trait]
impl Generator for GeneratorService {
    type GenerateStream = UnboundedReceiverStream<std::result::Result<GenerateResponse, Status>>;

    async fn generate(&self, request: Request<GenerateRequest>) -> std::result::Result<Response<Self::GenerateStream>, Status> {
        let span = tracing::info_span!("generate_request");
        match self.start(request).instrument(span).await {
            Ok(stream) => Ok(Response::new(stream)),
            Err(err) => {
                tracing::debug!(error = %err, "generate refused");
                Err(err.into())
            }
        }
    }

    async fn warm_memories(&self, request: Request<WarmMemoriesRequest>) -> std::result::Result<Response<WarmMemoriesResponse>, Status> {
        let span = tracing::info_span!("warm_memories", memories = request.get_ref().memories.len());
        Ok(Response::new(self.warm(request.into_inner()).instrument(span).await?))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> std::result::Result<Response<InfoResponse>, Status> {
        let engine = self.engine()?;
        let s = &engine.stats;
        Ok(Response::new(InfoResponse {
            model: engine.info.name.clone(),
            device: engine.info.device.clone(),
            dtype: engine.info.dtype.clone(),
            context_length: engine.info.context_length as u32,
            max_batch: self.config.max_batch,
            max_batch_prefill_tokens: self.config.max_batch_prefill_tokens,
            max_kv_tokens: self.config.max_kv_tokens,
            default_attend_mode: if self.config.default_attend_mode == "fused" { AttendMode::Fused as i32 } else { AttendMode::Concat as i32 },
            active_sequences: s.active.load(Ordering::Relaxed) as u32,
            waiting_requests: s.waiting.load(Ordering::Relaxed) as u32,
            tokens_generated: s.tokens_generated.load(Ordering::Relaxed),
            kv_tokens_reserved: s.kv_tokens.load(Ordering::Relaxed),
            prefix_cache_hit_tokens: s.prefix_hit_tokens.load(Ordering::Relaxed),
            requests_cancelled: s.cancelled.load(Ordering::Relaxed),
            memory_cache_bytes: s.memory_bytes.load(Ordering::Relaxed),
            memory_cache_entries: s.memory_entries.load(Ordering::Relaxed),
            memory_cache_hits: s.memory_hits.load(Ordering::Relaxed),
            memory_cache_misses: s.memory_misses.load(Ordering::Relaxed),
            memory_cache_evictions: s.memory_evictions.load(Ordering::Relaxed),
            recompute_head_tokens: self.config.recompute_head_tokens,
            recompute_ratio: self.config.recompute_ratio,
            recompute_rule: match self.config.recompute_rule {
                crate::engine::RecomputeRule::Query => memgpt_proto::generator::v1::RecomputeRule::Query as i32,
                crate::engine::RecomputeRule::Deviation => memgpt_proto::generator::v1::RecomputeRule::Deviation as i32,
            },
            memory_tokens_reused: s.memory_tokens_reused.load(Ordering::Relaxed),
            memory_cache_disk_hits: s.memory_disk_hits.load(Ordering::Relaxed),
            memory_cache_disk_bytes: s.memory_disk_bytes.load(Ordering::Relaxed),
            memory_cache_disk_entries: s.memory_disk_entries.load(Ordering::Relaxed),
            memory_cache_disk_errors: s.memory_disk_errors.load(Ordering::Relaxed),
            memory_temperature: self.config.memory_temperature,
            memory_scale: self.config.memory_scale,
        }))
    }
}
