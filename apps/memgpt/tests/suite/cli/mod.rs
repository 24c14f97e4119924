//! Tests of the `memgpt` command, run as a process, a module per area.

mod batch;
mod common;
mod eval_gateway;
mod eval_graph;
mod eval_qa;
mod eval_scifact;
mod serve;
