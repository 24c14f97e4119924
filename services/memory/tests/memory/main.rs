//! The memory service's tests, one binary (each test binary links Qdrant Edge): gRPC in
//! process, validation, durability under `kill -9` of the real binary, and fuzzing of the
//! request validation; ranking modes and validity, and the migration of older data
//! directories.

mod common;

mod durability;
mod fuzz;
mod grpc;
mod migration;
mod ranking;
mod validation;
