//! The workspace's tests above the unit level, one binary (each test binary is a link of its
//! own that codegens the tonic, Qdrant and libtorch code it uses again, and CI builds on two
//! cores): `memory` and `generator` test each service in this process on port 0 (the real
//! Qdrant Edge store, the real default model); `gateway` runs the three services in this
//! process; `cluster` runs the real service binaries as processes (faults, partitions, load);
//! `cli` runs the `memgpt` command as a process; `scoring` checks the evaluations' metrics.

mod cli;
mod cluster;
mod gateway;
mod generator;
mod memory;
mod scoring;
