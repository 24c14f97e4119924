//! `memgpt eval qa` on a small fixed SQuAD subset, in-process: EM and F1 for concat, the own
//! paragraph retrieved for most questions, fused reported as unavailable (not yet built).
//! The 200-question default is the separate command in docs/benchmarks.md.

use crate::common::{data, memgpt, ok};

#[test]
fn squad_subset_scores_concat_and_reports_fused() {
    let out = ok({
        let mut c = memgpt(None, &["eval", "qa", "--questions", "12", "--distractors", "24", "--max-new-tokens", "24", "--device", "cpu", "--data"]);
        c.arg(data("squad/dev-v1.1-articles-00-23.json.gz"));
        c
    });
    let metric = |name: &str| -> f64 {
        out.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("no `{name}` in:\n{out}"))
    };
    assert_eq!(metric("questions "), 12.0);
    let f1 = metric("F1[concat] ");
    assert!(f1 > 5.0 && f1 <= 100.0, "{out}");
    assert!(metric("EM[concat] ") <= f1, "{out}");
    assert!(metric("retrieval_hit_rate[concat] ") >= 0.75, "{out}");
    assert!(out.contains("unavailable[fused]") || out.contains("F1[fused]"), "{out}");
}
