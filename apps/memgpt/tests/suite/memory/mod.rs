//! The memory service's tests: gRPC in process, validation, durability under `kill -9` of the real binary, and fuzzing of the
//! request validation; ranking modes and validity, and the migration of older data
//! directories. The store-independent ones run on every store of `common::stores` (edge, and
//! the qdrant store with `QDRANT_URL` / `QDRANT_CLUSTER_URLS`); Qdrant's own faults run on
//! nodes started from `QDRANT_BIN`.

mod common;

mod durability;
mod fuzz;
mod grpc;
mod migration;
mod qdrant_faults;
mod qdrant_nodes;
mod ranking;
mod validation;
