//! The generator service's calls: a generation stream (retried once elsewhere when the first
//! endpoint is unreachable: nothing was generated then), routed cache-aware by its memories
//! (or to the least loaded generator), warming memory-KV caches where routing will look for
//! them (or every healthy replica's), and the model's description.

use std::sync::Arc;
use std::time::Duration;

use gen::generator_client::GeneratorClient as Raw;
use memgpt_proto::generator::v1 as gen;
use tonic::transport::Channel;

use super::affinity::{self, Routing};
use super::pool::InFlight;
use super::{Pool, MAX_MESSAGE_BYTES};
use crate::error::Result;
use crate::trace::Trace;

/// Memories per WarmMemories call.
const WARM_PER_CALL: usize = 256;

/// Calls to the generator service.
pub struct GeneratorClient {
    pool: Arc<Pool>,
    generate: Duration,
    info: Duration,
    routing: Routing,
}

/// The routing keys of a generation's memories (after its system prompt).
fn keys(system: &str, memories: &[gen::Memory]) -> Vec<u64> {
    memories.iter().map(|m| affinity::key(system, &m.id, &m.text)).collect()
}

fn raw(channel: Channel) -> Raw<Channel> {
    Raw::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl GeneratorClient {
    /// Calls over `pool`, routed by `routing`; generations and warming get `generate`, Info
    /// gets `info`.
    pub fn new(pool: Arc<Pool>, generate: Duration, info: Duration, routing: Routing) -> Self {
        Self { pool, generate, info, routing }
    }

    /// The deadline of a whole generation (its stream included).
    pub fn deadline(&self) -> Duration {
        self.generate
    }

    /// The endpoints.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Starts a generation on a healthy generator. The [`InFlight`] guard counts it on its
    /// endpoint while the stream lives.
    pub async fn generate(&self, trace: &Trace, req: gen::GenerateRequest) -> Result<(tonic::Streaming<gen::GenerateResponse>, InFlight)> {
        let keys = match self.routing {
            Routing::CacheAware => {
                let system = req.messages.first().filter(|m| m.role == "system").map_or("", |m| m.content.as_str());
                keys(system, &req.memories)
            }
            Routing::LeastInFlight => Vec::new(),
        };
        self.pool
            .call_routed(true, &keys, |channel| {
                let req = trace.request(req.clone(), self.generate);
                async move { raw(channel).generate(req).await.map(tonic::Response::into_inner) }
            })
            .await
    }

    /// Asks generators to cache the states of `memories` after `system`: cache-aware, the one
    /// generator routing will send them to (the memories of one Remember stay together);
    /// otherwise every healthy one. Returns how many every one asked now caches. Failures are
    /// logged, not returned: a generator computes what it misses on first use.
    pub async fn warm(&self, trace: &Trace, memories: &[gen::Memory], system: &str) -> u32 {
        let generators = match self.routing {
            Routing::CacheAware => self.pool.routed_channel(&keys(system, memories)).into_iter().collect(),
            Routing::LeastInFlight => self.pool.healthy_channels(),
        };
        if generators.is_empty() {
            tracing::warn!("no healthy generator to warm memories on");
            return 0;
        }
        let calls = generators.into_iter().map(|(addr, channel)| async move {
            let mut client = raw(channel);
            let mut cached = 0;
            for part in memories.chunks(WARM_PER_CALL) {
                let req = gen::WarmMemoriesRequest { memories: part.to_vec(), system: system.to_string() };
                match client.warm_memories(trace.request(req, self.generate)).await {
                    Ok(r) => cached += r.into_inner().cached,
                    Err(status) => {
                        tracing::warn!(generator = %addr, code = ?status.code(), error = status.message(), "warming memories failed");
                        return 0;
                    }
                }
            }
            cached
        });
        let warmed = futures::future::join_all(calls).await.into_iter().min().unwrap_or(0);
        tracing::info!(chunks = memories.len(), warmed, "memories warmed");
        warmed
    }

    /// What a healthy generator serves; none (logged) when none answers.
    pub async fn info(&self, trace: &Trace) -> Option<gen::InfoResponse> {
        self.pool
            .call(true, |channel| {
                let req = trace.request(gen::InfoRequest {}, self.info);
                async move { raw(channel).info(req).await }
            })
            .await
            .map(|(r, _)| r.into_inner())
            .map_err(|e| tracing::warn!(error = %e, "generator info unavailable"))
            .ok()
    }
}
