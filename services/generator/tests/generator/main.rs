//! The generator's integration tests, one binary (one link of the tree instead of three): the
//! service in this process on port 0 with the real default model on CPU.

mod common;

mod answers;
mod fused;
mod generate;
mod load;
mod validation;
