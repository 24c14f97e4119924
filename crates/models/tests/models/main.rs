//! The models' tests, one binary (each test binary links libtorch): reference checks against
//! the Python implementations, the ragged step, memory-KV fusion, devices, error messages and
//! fuzzing of the weight readers.

mod common;

mod devices;
mod errors;
mod fused;
mod fuzz;
mod ragged;
mod reference;
