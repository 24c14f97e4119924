//! The gateway's integration tests, one binary (each test binary links the whole tree, so one
//! link instead of six): the three services in this process on port 0 with the real models.

mod common;

mod api;
mod ask;
mod cancel;
mod failover;
mod tls;
mod trace;
