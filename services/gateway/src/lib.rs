//! The MemGPT gateway: for every question, encode → retrieve → attend → decode → output,
//! over a pool of memory services and a pool of generator services.
//!
//! - [`stages`]: one module per stage (encode, retrieve, attend, output);
//! - [`flows`]: each request composed from the stages (ask, chat, remember/forget/search);
//! - [`validate`]: every check of a gateway request;
//! - [`ingest`]: documents given as files (PDF, HTML, Markdown) read into sections of text;
//! - [`http`]: the OpenAI-compatible HTTP/JSON API over the same flows;
//! - [`clients`]: typed clients of the memory and generator services over endpoint pools;
//! - [`rpc`]: the thin gRPC handlers (and the forwarded backend APIs);
//! - [`server`]: serving it (through the server kit), [`auth`], [`config`], [`error`].

pub mod auth;
pub mod chunk;
pub mod clients;
pub mod config;
pub mod error;
pub mod flows;
pub mod http;
pub mod ingest;
pub mod rpc;
pub mod server;
pub mod stages;
pub mod trace;
pub mod validate;

pub use config::GatewayConfig;
pub use error::{GatewayError, Result};
pub use server::{serve, serve_with, Options, SERVICE_NAME};
