//! The scoring functions the evaluations report with, against their definitions.

use std::collections::HashMap;

use memgpt_stack::scoring::{exact_match, f1, metrics, normalize};

#[test]
fn ranking_metrics_follow_the_trec_definitions() {
    let rel: HashMap<String, i64> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
    let (ndcg, recall, mrr) = metrics(&["x", "a", "y", "b"], &rel, 10);
    let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
    let idcg = 1.0 + 1.0 / 3f64.log2();
    assert!((ndcg - dcg / idcg).abs() < 1e-12);
    assert_eq!((recall, mrr), (1.0, 0.5));
    let (ndcg, recall, mrr) = metrics(&["x", "y"], &rel, 10);
    assert_eq!((ndcg, recall, mrr), (0.0, 0.0, 0.0));
}

#[test]
fn squad_scoring_matches_the_official_script() {
    let golds = vec!["the Denver Broncos".to_string(), "Broncos".to_string()];
    assert_eq!(exact_match("Denver Broncos!", &golds), 1.0);
    assert_eq!(exact_match("Carolina", &golds), 0.0);
    assert!((f1("the Denver team", &golds) - 0.5).abs() < 1e-9);
    assert_eq!(normalize("  The  Cat's, a HAT "), "cats hat");
}
