//! How rankings and answers are scored: the TREC ranking metrics at a cutoff (nDCG, recall,
//! MRR; as BEIR's evaluation computes them) and SQuAD's exact match and token F1 (as its
//! official script computes them).

use std::collections::HashMap;

/// The metrics of one ranking against its judgements.
pub fn metrics(ranked: &[&str], relevant: &HashMap<String, i64>, k: usize) -> (f64, f64, f64) {
    let top = &ranked[..k.min(ranked.len())];
    let dcg: f64 = top.iter().enumerate().map(|(i, d)| *relevant.get(*d).unwrap_or(&0) as f64 / (i as f64 + 2.0).log2()).sum();
    let mut ideal: Vec<i64> = relevant.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &r)| r as f64 / (i as f64 + 2.0).log2()).sum();
    let positives = relevant.values().filter(|&&r| r > 0).count();
    let hits = top.iter().filter(|d| relevant.get(**d).is_some_and(|&r| r > 0)).count();
    let mrr = top.iter().position(|d| relevant.get(*d).is_some_and(|&r| r > 0)).map(|i| 1.0 / (i as f64 + 1.0)).unwrap_or(0.0);
    let ndcg = if idcg > 0.0 { dcg / idcg } else { 0.0 };
    let recall = if positives > 0 { hits as f64 / positives as f64 } else { 0.0 };
    (ndcg, recall, mrr)
}

/// SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize(s: &str) -> String {
    let lower: String = s.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    lower.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Exact match against the best gold answer (0 or 1).
pub fn exact_match(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize(prediction);
    if golds.iter().any(|g| normalize(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// Token F1 against the best gold answer.
pub fn f1(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize(prediction);
    let pt: Vec<&str> = p.split_whitespace().collect();
    golds
        .iter()
        .map(|g| {
            let g = normalize(g);
            let gt: Vec<&str> = g.split_whitespace().collect();
            let mut counts: HashMap<&str, i64> = HashMap::new();
            for t in &gt {
                *counts.entry(t).or_default() += 1;
            }
            let mut same = 0i64;
            for t in &pt {
                if let Some(c) = counts.get_mut(t) {
                    if *c > 0 {
                        *c -= 1;
                        same += 1;
                    }
                }
            }
            if same == 0 {
                return 0.0;
            }
            let precision = same as f64 / pt.len() as f64;
            let recall = same as f64 / gt.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}
