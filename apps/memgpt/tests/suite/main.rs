//! The tests of the whole stack, one binary (each test binary links libtorch and Qdrant Edge):
//! `gateway` runs the three services in this process on port 0 with the real models; `cli`
//! runs the `memgpt` command as a process; `scoring` checks the evaluations' metrics.

mod cli;
mod gateway;
mod scoring;
