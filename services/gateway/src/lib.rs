//! The MemGPT gateway: for every question, encode → retrieve → attend → decode → output,
//! over a pool of memory services and a pool of generator services.

pub mod ask;
pub mod auth;
pub mod backends;
pub mod chat;
pub mod chunk;
pub mod config;
pub mod error;
pub mod forward;
pub mod memory_ops;
pub mod pipeline;
pub mod server;
pub mod service;

pub use config::GatewayConfig;
pub use error::{GatewayError, Result};
pub use server::{serve, serve_with, Options, SERVICE_NAME};
