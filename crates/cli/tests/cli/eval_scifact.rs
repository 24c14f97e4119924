//! `memgpt eval retrieval` on the real SciFact test split (../shared/data/scifact): the encoder
//! reproduces the published nDCG@10 of all-MiniLM-L6-v2 (0.64508) within 0.005.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn scifact_ndcg_matches_the_published_score() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/scifact");
    assert!(data.join("queries.jsonl").exists(), "SciFact data not found at {}", data.display());
    let output = Command::new(env!("CARGO_BIN_EXE_memgpt"))
        .args(["eval", "retrieval", "--device", "cpu", "--data"])
        .arg(&data)
        .output()
        .expect("memgpt runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "memgpt eval failed: {}\n{}", stdout, String::from_utf8_lossy(&output.stderr));
    let metric = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"))
    };
    let ndcg = metric("nDCG@10 ");
    assert!((ndcg - 0.64508).abs() <= 0.005, "nDCG@10 {ndcg} is not 0.645 ± 0.005");
    assert!((metric("Recall@10 ") - 0.78333).abs() <= 0.01, "{stdout}");
    assert!((metric("MRR@10 ") - 0.60472).abs() <= 0.01, "{stdout}");
    assert_eq!(metric("queries "), 300.0);
}

#[test]
fn a_missing_data_folder_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_memgpt"))
        .args(["eval", "retrieval", "--data", "/nonexistent/beir"])
        .output()
        .expect("memgpt runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/beir") && stderr.contains("corpus.jsonl"), "{stderr}");
}
