//! Cluster tests: the real service binaries as processes (a memory service, two generators, a
//! gateway) on loopback, through the harness of the `integration-tests` crate. Run one at a
//! time (`--test-threads=1`, as scripts/test does); the long fault and load runs have
//! CI-sized defaults and a full size with `MEMGPT_IT_FULL=1`.

mod bad_input;
mod e2e;
mod faults;
mod isolation;
mod load;
mod partitions;

/// Full-size runs (`MEMGPT_IT_FULL=1`) or CI-sized ones.
pub fn full() -> bool {
    std::env::var_os("MEMGPT_IT_FULL").is_some_and(|v| v == "1")
}

/// Documents `prefix-0..n`, one short sentence each (one chunk each).
pub fn docs(prefix: &str, n: usize) -> Vec<memgpt_proto::gateway::v1::Document> {
    (0..n)
        .map(|i| memgpt_proto::gateway::v1::Document {
            id: format!("{prefix}-{i}"),
            text: format!("Record {i} of {prefix}: the value is {}.", i * 37 % 1000),
            metadata: Default::default(),
            ..Default::default()
        })
        .collect()
}

/// Question `i` of a batch over `docs("fact", 20)`: short and greedy.
pub fn fact_question(i: usize) -> memgpt_proto::gateway::v1::AskRequest {
    memgpt_proto::gateway::v1::AskRequest {
        question: format!("What is the value of record {} of fact?", i % 20),
        namespaces: vec!["kb".into()],
        top_k: Some(1),
        params: Some(memgpt_proto::generator::v1::SamplingParams { max_new_tokens: Some(8), temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    }
}

/// Statuses these tests retry (with backoff): `memgpt batch`'s three (UNAVAILABLE,
/// RESOURCE_EXHAUSTED, ABORTED) and an expired deadline or a cancel; any other is final.
pub fn retryable(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::ResourceExhausted | tonic::Code::Aborted | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
}
