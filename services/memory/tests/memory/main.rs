//! The memory service's tests, one binary (each test binary links Qdrant Edge): gRPC in
//! process, validation, durability under `kill -9` of the real binary, and fuzzing of the
//! request validation.

mod common;

mod durability;
mod fuzz;
mod grpc;
mod validation;
