//! `memgpt eval qa` (through the gateway, retrieval included) and `memgpt eval attend` (fused
//! against concat, straight to the generator) on small fixed SQuAD subsets, in-process. The
//! 200-question defaults are the separate commands in docs/benchmarks.md.

use super::common::{data, memgpt, ok};

#[test]
fn squad_subset_scores_concat_through_the_gateway() {
    let out = ok({
        let mut c = memgpt(None, &["eval", "qa", "--questions", "12", "--distractors", "24", "--max-new-tokens", "24", "--modes", "concat", "--device", "cpu", "--data"]);
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
    assert!(!out.contains("[fused]"), "{out}");
}

fn metrics(out: &str) -> impl Fn(&str) -> f64 + '_ {
    move |name: &str| out.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or_else(|| panic!("no `{name}` in:\n{out}"))
}

fn eval_attend(extra: &[&str]) -> String {
    let mut args = vec!["eval", "attend", "--questions", "4", "--max-new-tokens", "12", "--device", "cpu"];
    args.extend(extra);
    args.push("--data");
    let mut c = memgpt(None, &args);
    c.arg(data("squad/dev-v1.1-articles-00-23.json.gz"));
    ok(c)
}

#[test]
fn eval_attend_at_ratio_1_is_concat_and_a_selective_pass_reads_the_memory_kv_cache() {
    // Two fused passes in one run (one model load): ratio 1 (sent per request) recomputes every
    // memory token laid in from the cache, so it answers exactly as concat; ratio 0.3 then
    // finds every memory of the same questions in the cache.
    let out = eval_attend(&["--recompute-ratio", "1,0.3"]);
    let metric = metrics(&out);
    assert_eq!(metric("questions "), 4.0);
    assert_eq!(metric("memories_per_question "), 5.0);
    assert_eq!(metric("identical_answers[fused@1] "), 1.0, "{out}");
    assert_eq!(metric("F1[fused@1] "), metric("F1[concat] "), "{out}");
    for mode in ["concat", "fused@0.3"] {
        let f1 = metric(&format!("F1[{mode}] "));
        assert!((0.0..=100.0).contains(&f1) && metric(&format!("EM[{mode}] ")) <= f1, "{out}");
        assert!(metric(&format!("ttft_ms_median[{mode}] ")) > 0.0, "{out}");
    }
    assert!((0.0..=1.0).contains(&metric("identical_answers[fused@0.3] ")), "{out}");
    // Every fused question looked its 5 memories up, in each pass: the first pass computed
    // what it missed, the second missed none.
    assert_eq!(metric("memory_cache_hits ") + metric("memory_cache_misses "), 40.0, "{out}");
    assert!(metric("memory_cache_misses ") >= 5.0, "{out}");
    assert!(metric("memory_cache_hits ") >= 20.0, "{out}");
}
