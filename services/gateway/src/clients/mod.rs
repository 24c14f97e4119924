//! Typed clients of the backends, as TGI's sharded client: each call of the memory and
//! generator services in one place, over a [`pool::Pool`] of health-checked endpoints, with
//! the request's trace and its stage's deadline.

pub mod affinity;
pub mod generator;
pub mod memory;
pub mod pool;

pub use generator::GeneratorClient;
pub use memory::MemoryClient;
pub use pool::{Pool, RouteLimits};

/// Largest message the gateway takes from or sends to a backend.
const MAX_MESSAGE_BYTES: usize = 64 << 20;
