//! SciFact through the gateway on a quick subset (every judged-relevant abstract plus 100
//! others): Remember with chunking and grouped dense Search rank the documents at least as
//! well as ranking the same subset directly by cosine (no worse than 0.005 nDCG@10 below
//! that ranking's pinned figure; chunking long abstracts instead of truncating them usually
//! ranks better), and hybrid
//! (BM25 and dense, fused) ranks them better than dense. The full corpus is the
//! separate command `memgpt eval gateway-retrieval --data ../shared/data/scifact`
//! (docs/benchmarks.md).

use std::process::Command;

/// `memgpt ARGS` on the subset: stdout.
fn run(args: &[&str]) -> String {
    let data = super::common::data("scifact");
    let output = Command::new(env!("CARGO_BIN_EXE_memgpt"))
        .args(args)
        .args(["--device", "cpu", "--corpus-limit", "100", "--log", "error", "--data"])
        .arg(&data)
        .output()
        .expect("memgpt runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "memgpt {args:?} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("queries 300"), "{stdout}");
    stdout
}

/// The nDCG@10 of the block after the line `after`.
fn ndcg(stdout: &str, after: &str) -> f64 {
    let start = stdout.find(after).unwrap_or_else(|| panic!("no `{after}` in {stdout}"));
    stdout[start..].lines().find_map(|l| l.strip_prefix("nDCG@10 ").and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("no nDCG@10 in {stdout}"))
}

/// `memgpt eval retrieval --corpus-limit 100` (the encoder ranking the subset directly by
/// cosine, f32): deterministic up to the CPU's rounding, so pinned rather than run again here.
const DIRECT_NDCG: f64 = 0.85365;

#[test]
fn scifact_subset_through_the_gateway_ranks_like_direct_retrieval_and_hybrid_beats_dense() {
    let direct = DIRECT_NDCG;
    let gateway = run(&["eval", "gateway-retrieval", "--retrieval", "dense,hybrid"]);
    let (dense, hybrid) = (ndcg(&gateway, "retrieval dense"), ndcg(&gateway, "retrieval hybrid"));
    assert!(dense >= direct - 0.005, "gateway dense nDCG@10 {dense} vs direct {direct}");
    assert!(dense > 0.8, "{dense}");
    assert!(hybrid > dense, "hybrid nDCG@10 {hybrid} does not beat dense {dense} on the same subset");
}
