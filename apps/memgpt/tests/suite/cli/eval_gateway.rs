//! SciFact through the gateway on a quick subset (every judged-relevant abstract plus 100
//! others): Remember with chunking and grouped Search rank the documents at least as well as
//! ranking the same subset directly by cosine (no worse than 0.005 nDCG@10 below; chunking
//! long abstracts instead of truncating them usually ranks better). The full corpus is the
//! separate command `memgpt eval gateway-retrieval --data ../shared/data/scifact`
//! (docs/benchmarks.md).

use std::process::Command;

fn ndcg(args: &[&str]) -> f64 {
    let data = super::common::data("scifact");
    let output = Command::new(env!("CARGO_BIN_EXE_memgpt"))
        .args(args)
        .args(["--device", "cpu", "--corpus-limit", "100", "--log", "error", "--data"])
        .arg(&data)
        .output()
        .expect("memgpt runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "memgpt {args:?} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("queries 300"), "{stdout}");
    stdout.lines().find_map(|l| l.strip_prefix("nDCG@10 ").and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("no nDCG@10 in {stdout}"))
}

#[test]
fn scifact_subset_through_the_gateway_ranks_like_direct_retrieval() {
    let direct = ndcg(&["eval", "retrieval"]);
    let gateway = ndcg(&["eval", "gateway-retrieval"]);
    assert!(gateway >= direct - 0.005, "gateway nDCG@10 {gateway} vs direct {direct}");
    assert!(gateway > 0.8, "{gateway}");
}
