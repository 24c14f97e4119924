//! Encode: texts to unit vectors on the encoder's thread, within the encode deadline (per
//! encoder batch of texts).

use std::time::Duration;

use memgpt_models::encoder::EncoderHandle;
use tracing::Instrument;

use crate::error::{GatewayError, Result};

/// The encoder and its deadline.
pub struct Encoder {
    handle: EncoderHandle,
    timeout_ms: u64,
    batch: usize,
}

impl Encoder {
    /// The stage over a loaded encoder: `timeout_ms` per batch of `batch` texts.
    pub fn new(handle: EncoderHandle, timeout_ms: u64, batch: usize) -> Self {
        Self { handle, timeout_ms, batch: batch.max(1) }
    }

    /// One vector per text, in order. A full encoder queue is RESOURCE_EXHAUSTED with a retry
    /// hint; a missed deadline is DEADLINE_EXCEEDED naming the stage.
    pub async fn encode(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let n = texts.len();
        let span = tracing::info_span!("encode", texts = n);
        let limit = self.timeout_ms * n.div_ceil(self.batch).max(1) as u64;
        match tokio::time::timeout(Duration::from_millis(limit), self.handle.embed(texts)).instrument(span).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(memgpt_models::ModelError::Overloaded(q))) => {
                Err(GatewayError::Exhausted { message: format!("the encoder queue is full ({q} jobs)"), retry_after_ms: 50 })
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(GatewayError::Deadline { stage: "encode", ms: limit }),
        }
    }

    /// The first text's vector.
    pub async fn encode_one(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.encode(vec![text.to_string()]).await?.pop().unwrap_or_default())
    }
}
