//! The gateway against real backends: the three services in this process on port 0 with the
//! real models (in this package because it is the one that depends on all three).

mod common;

mod api;
mod ask;
mod cancel;
mod chunk;
mod failover;
mod graph;
mod health;
mod ingest;
mod routing;
mod tls;
mod trace;
