//! The MemGPT memory service: records (vector, text, metadata) per namespace, sharded in Qdrant.
//!
//! `serve` runs the gRPC server on a bound listener until a shutdown future resolves; the
//! binary in `main.rs` only parses the configuration and calls it.

pub mod config;
pub mod error;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;

pub use config::{MemoryConfig, StoreKind};
pub use error::MemoryError;
pub use server::serve;
