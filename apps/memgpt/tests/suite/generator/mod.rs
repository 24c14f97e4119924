//! The generator's integration tests: the service in this process on port 0 with the real default model on CPU.

mod common;

mod answers;
mod fused;
mod generate;
mod load;
mod validation;
