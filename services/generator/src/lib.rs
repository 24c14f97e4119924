//! The MemGPT generator service: a llama-family decoder (crates/models) on its own thread,
//! scheduled with continuous batching, sampled per request and streamed over gRPC.

pub mod config;
pub mod error;
pub mod prompt;
pub mod engine;
pub mod server;
pub mod service;
pub mod validate;

pub use config::GeneratorConfig;
pub use error::{GeneratorError, Result};
pub use server::{serve, SERVICE_NAME};
