//! The stages every question runs through: encode, retrieve, attend and decode (one generator
//! call), output. Each stage has its own span and deadline; the trace id travels to the memory
//! and generator services as W3C `traceparent` metadata.

use std::sync::Arc;
use std::time::Duration;

use memgpt_models::encoder::EncoderHandle;
use memgpt_models::text::tokenizer::TextTokenizer;
use memgpt_proto::generator::v1 as gen;
use memgpt_proto::memory::v1 as mem;
use tracing::Instrument;

use crate::backends::Pool;
use crate::config::GatewayConfig;
use crate::error::{GatewayError, Result};

/// A memory found for a question.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// Namespace it came from.
    pub namespace: String,
    /// The hit.
    pub hit: mem::Hit,
}

impl Retrieved {
    /// The document a chunk belongs to (its `document_id` metadata, else the id before `#`).
    pub fn document_id(&self) -> String {
        self.hit.metadata.get("document_id").cloned().unwrap_or_else(|| self.hit.id.split('#').next().unwrap_or_default().to_string())
    }
}

/// The trace of one request.
#[derive(Debug, Clone)]
pub struct Trace {
    /// 32 hex digits.
    pub trace_id: String,
}

impl Trace {
    /// The trace of the current span (which continues the caller's `traceparent`, see
    /// `memgpt_telemetry::propagation::grpc_span`); a random id when no subscriber records
    /// spans.
    pub fn current() -> Self {
        let id = memgpt_telemetry::propagation::current_trace_id();
        let valid = id.len() == 32 && id.bytes().any(|b| b != b'0');
        Self { trace_id: if valid { id } else { format!("{:032x}", rand::random::<u128>()) } }
    }

    /// `msg` as a request carrying the current span's trace context and a deadline.
    pub fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        memgpt_telemetry::propagation::inject(req.metadata_mut());
        if !req.metadata().contains_key("traceparent") {
            let parent = format!("00-{}-{:016x}-01", self.trace_id, rand::random::<u64>().max(1));
            if let Ok(v) = parent.parse() {
                req.metadata_mut().insert("traceparent", v);
            }
        }
        req.set_timeout(timeout);
        req
    }
}

/// What the gateway holds.
pub struct Gateway {
    /// Configuration.
    pub config: Arc<GatewayConfig>,
    /// The encoder thread.
    pub encoder: EncoderHandle,
    /// The encoder's tokeniser, without truncation (for chunking).
    pub tokenizer: TextTokenizer,
    /// Memory service endpoints.
    pub memory: Arc<Pool>,
    /// Generator service endpoints.
    pub generator: Arc<Pool>,
}

fn ms(d: u64) -> Duration {
    Duration::from_millis(d)
}

impl Gateway {
    /// Encodes texts within the encode deadline (per encoder batch of texts).
    pub async fn encode(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let n = texts.len();
        let span = tracing::info_span!("encode", texts = n);
        let limit = self.config.encode_timeout_ms * n.div_ceil(self.config.encoder_batch.max(1)).max(1) as u64;
        match tokio::time::timeout(ms(limit), self.encoder.embed(texts)).instrument(span).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(memgpt_models::ModelError::Overloaded(q))) => {
                Err(GatewayError::Exhausted { message: format!("the encoder queue is full ({q} jobs)"), retry_after_ms: 50 })
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(GatewayError::Deadline { stage: "encode", ms: limit }),
        }
    }

    /// Searches every namespace in parallel and merges the hits by score (best `top_k`).
    pub async fn retrieve(
        &self,
        trace: &Trace,
        vector: Vec<f32>,
        namespaces: &[String],
        top_k: u32,
        filter: Option<mem::Filter>,
        min_score: Option<f32>,
    ) -> Result<Vec<Retrieved>> {
        let span = tracing::info_span!("retrieve", namespaces = ?namespaces, top_k, hits = tracing::field::Empty);
        let timeout = ms(self.config.retrieve_timeout_ms);
        let searches = namespaces.iter().map(|ns| {
            let req = mem::SearchRequest { namespace: ns.clone(), vector: vector.clone(), top_k, filter: filter.clone(), min_score };
            async move {
                let (resp, _guard) = self
                    .memory
                    .call(true, |channel| {
                        let req = trace.request(req.clone(), timeout);
                        async move { mem::memory_client::MemoryClient::new(channel).search(req).await }
                    })
                    .await?;
                Ok::<_, GatewayError>(resp.into_inner().hits.into_iter().map(|hit| Retrieved { namespace: ns.clone(), hit }).collect::<Vec<_>>())
            }
        });
        let results = futures::future::try_join_all(searches).instrument(span.clone()).await?;
        let mut all: Vec<Retrieved> = results.into_iter().flatten().collect();
        all.sort_by(|a, b| b.hit.score.total_cmp(&a.hit.score).then_with(|| a.hit.id.cmp(&b.hit.id)));
        all.truncate(top_k as usize);
        span.record("hits", all.len());
        Ok(all)
    }

    /// Starts a generation on a healthy generator (retried once elsewhere when the first one is
    /// unavailable; nothing was generated then).
    pub async fn generate(
        &self,
        trace: &Trace,
        req: gen::GenerateRequest,
    ) -> Result<(tonic::Streaming<gen::GenerateResponse>, crate::backends::InFlight)> {
        let timeout = ms(self.config.generate_timeout_ms);
        self.generator
            .call(true, |channel| {
                let req = trace.request(req.clone(), timeout);
                async move {
                    let mut client = gen::generator_client::GeneratorClient::new(channel).max_decoding_message_size(64 << 20);
                    client.generate(req).await.map(tonic::Response::into_inner)
                }
            })
            .await
    }

    /// Calls the memory service (idempotent calls only: upsert by id, get, delete).
    pub async fn memory_call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(mem::memory_client::MemoryClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let (resp, _guard) = self.memory.call(true, |channel| f(mem::memory_client::MemoryClient::new(channel).max_decoding_message_size(64 << 20))).await?;
        Ok(resp.into_inner())
    }
}
