//! The stages every question runs through, one module each:
//!
//! - [`encode`]: text to vectors with the sentence encoder (questions, and every chunk that is
//!   remembered);
//! - [`retrieve`]: the nearest memories of the question's namespaces from the memory service,
//!   and with [`graph`] the facts reached from them hop by hop;
//! - [`attend`]: the generation request that puts the memories into the decoder's attention
//!   (concat or fused), and the generator's stream (decode) relayed as it comes;
//! - [`output`]: the answer, citations, usage, stage timings and metrics.
//!
//! Each stage has its own span and deadline; the flows in `crate::flows` compose them.

pub mod attend;
pub mod encode;
pub mod graph;
pub mod output;
pub mod retrieve;

use std::sync::Arc;

use memgpt_models::text::tokenizer::TextTokenizer;

use crate::clients::{GeneratorClient, MemoryClient};
use crate::config::GatewayConfig;

/// What the stages run on, once the encoder is loaded.
pub struct Gateway {
    /// Configuration.
    pub config: Arc<GatewayConfig>,
    /// The encode stage.
    pub encoder: encode::Encoder,
    /// The encoder's tokeniser, without truncation (for chunking).
    pub tokenizer: TextTokenizer,
    /// The memory service.
    pub memory: MemoryClient,
    /// The generator service.
    pub generator: GeneratorClient,
}
