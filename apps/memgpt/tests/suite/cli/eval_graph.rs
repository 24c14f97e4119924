//! `memgpt eval graph` at a CI size, in-process: chains of depth 1 and 3 in both attend modes.
//! The 20-chain, depths 1 to 6 default is the separate command in docs/benchmarks.md.

use super::common::{memgpt, ok};

#[test]
fn hops_recall_chains_that_one_search_cannot() {
    let args = ["eval", "graph", "--depths", "1,3", "--chains", "4", "--distractors", "60", "--max-new-tokens", "64", "--device", "cpu"];
    let out = ok(memgpt(None, &args));
    let line = |mode: &str, hops: u32, depth: u32| -> (f64, f64) {
        let head = format!("mode {mode} max_hops {hops} depth {depth} accuracy ");
        let l = out.lines().find_map(|l| l.strip_prefix(&head)).unwrap_or_else(|| panic!("no `{head}` in:\n{out}"));
        let num = |s: Option<&str>| s.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{l}"));
        (num(l.split_whitespace().next()), num(l.split_whitespace().nth(3)))
    };
    for mode in ["concat", "fused"] {
        // One search finds the head's fact only: the end of a 3-fact chain is out of reach.
        assert_eq!(line(mode, 1, 3), (0.0, 0.0), "{out}");
        // Three hops cite the whole path, in order; a small model answers most from it.
        let (accuracy, cited) = line(mode, 3, 3);
        assert_eq!(cited, 1.0, "{out}");
        assert!(accuracy >= 0.5, "{out}");
        assert_eq!(line(mode, 3, 1).1, 1.0, "{out}");
    }
}
