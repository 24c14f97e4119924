//! Ranking modes and the fusion of a dense and a BM25 list into one ranking.
//!
//! Both stores draw the two lists in one call and fuse them here, so a hybrid search ranks
//! the same on edge and on a Qdrant cluster, and every hit keeps its place in each list (the
//! gateway's citations say which list found a memory). Fusion methods as compared by Bruch
//! et al. (arXiv 2210.11934): reciprocal rank fusion, and a convex combination of min-max
//! normalised scores.

use std::collections::HashMap;

use super::{Hit, Lists, Ranked};

/// RRF's k when a request leaves it unset (Cormack et al.; Qdrant's and Elasticsearch's).
pub const DEFAULT_RRF_K: u32 = 60;
/// The dense list's weight in a convex combination when a request leaves it unset.
pub const DEFAULT_DENSE_WEIGHT: f32 = 0.5;

/// How two lists become one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Each list adds `1 / (k + rank)`.
    Rrf {
        /// At least 1.
        k: u32,
    },
    /// `w * dense + (1 - w) * sparse`, each min-max normalised over its list (0 when absent).
    Convex {
        /// In [0, 1].
        dense_weight: f32,
    },
}

/// Which lists a search ranks by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retrieval {
    /// Cosine similarity.
    Dense,
    /// BM25.
    Sparse,
    /// Both, fused.
    Hybrid(Fusion),
}

impl Retrieval {
    /// Whether the dense list is searched.
    pub fn dense(&self) -> bool {
        !matches!(self, Self::Sparse)
    }

    /// Whether the BM25 list is searched.
    pub fn sparse(&self) -> bool {
        !matches!(self, Self::Dense)
    }
}

/// Sorts hits best first (ties by id, then namespace, so every store and run agree) and keeps `n`.
pub fn best(hits: &mut Vec<Hit>, n: usize) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)).then_with(|| a.namespace.cmp(&b.namespace)));
    hits.truncate(n);
}

/// Numbers each list's hits by rank, 1 = best (the lists come sorted).
fn number(hits: &mut [Hit], dense: bool) {
    for (i, hit) in hits.iter_mut().enumerate() {
        let place = Some(Ranked { rank: i as u32 + 1, score: hit.score });
        if dense {
            hit.dense = place;
        } else {
            hit.sparse = place;
        }
    }
}

fn min_max(hits: &[Hit]) -> impl Fn(f32) -> f32 {
    let lo = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    let hi = hits.iter().map(|h| h.score).fold(f32::NEG_INFINITY, f32::max);
    move |s| if hi > lo { (s - lo) / (hi - lo) } else { 1.0 }
}

/// The final ranking of a search: one list as it is, or both fused; at most `top_k` hits,
/// none below `min_score`.
pub fn rank(retrieval: Retrieval, mut lists: Lists, top_k: usize, min_score: Option<f32>) -> Vec<Hit> {
    number(&mut lists.dense, true);
    number(&mut lists.sparse, false);
    let mut hits = match retrieval {
        Retrieval::Dense => lists.dense,
        Retrieval::Sparse => lists.sparse,
        Retrieval::Hybrid(fusion) => fuse(fusion, lists),
    };
    if let Some(min) = min_score {
        hits.retain(|h| h.score >= min);
    }
    best(&mut hits, top_k);
    hits
}

fn fuse(fusion: Fusion, lists: Lists) -> Vec<Hit> {
    let dense_norm = min_max(&lists.dense);
    let sparse_norm = min_max(&lists.sparse);
    let score = |hit: &Hit| match fusion {
        Fusion::Rrf { k } => {
            let part = |r: Option<Ranked>| r.map_or(0.0, |r| 1.0 / (k as f32 + r.rank as f32));
            part(hit.dense) + part(hit.sparse)
        }
        Fusion::Convex { dense_weight } => {
            dense_weight * hit.dense.map_or(0.0, |r| dense_norm(r.score))
                + (1.0 - dense_weight) * hit.sparse.map_or(0.0, |r| sparse_norm(r.score))
        }
    };
    // A record is its (namespace, id): one search may span namespaces.
    let mut merged: HashMap<(String, String), Hit> = HashMap::with_capacity(lists.dense.len() + lists.sparse.len());
    for hit in lists.dense.into_iter().chain(lists.sparse) {
        match merged.get_mut(&(hit.namespace.clone(), hit.id.clone())) {
            Some(seen) => {
                seen.dense = seen.dense.or(hit.dense);
                seen.sparse = seen.sparse.or(hit.sparse);
            }
            None => {
                merged.insert((hit.namespace.clone(), hit.id.clone()), hit);
            }
        }
    }
    merged
        .into_values()
        .map(|mut hit| {
            hit.score = score(&hit);
            hit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, score: f32) -> Hit {
        Hit {
            namespace: "ns".into(),
            id: id.into(),
            score,
            text: String::new(),
            metadata: Default::default(),
            validity: Default::default(),
            dense: None,
            sparse: None,
        }
    }

    fn lists() -> Lists {
        Lists {
            dense: vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)],
            sparse: vec![hit("c", 12.0), hit("d", 9.0), hit("a", 1.0)],
        }
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn rrf_rewards_agreement_and_keeps_both_ranks() {
        let hits = rank(Retrieval::Hybrid(Fusion::Rrf { k: 60 }), lists(), 10, None);
        // a: 1/61 + 1/63, c: 1/63 + 1/61 (tie, by id), then b (1/62) and d (1/62).
        assert_eq!(ids(&hits), ["a", "c", "b", "d"]);
        let c = &hits[1];
        assert_eq!(c.dense.map(|r| r.rank), Some(3));
        assert_eq!(c.sparse.map(|r| (r.rank, r.score)), Some((1, 12.0)));
        assert_eq!(hits[3].dense, None);
    }

    #[test]
    fn convex_weights_the_normalised_scores() {
        let all_dense = rank(Retrieval::Hybrid(Fusion::Convex { dense_weight: 1.0 }), lists(), 2, None);
        assert_eq!(ids(&all_dense), ["a", "b"]);
        let all_sparse = rank(Retrieval::Hybrid(Fusion::Convex { dense_weight: 0.0 }), lists(), 2, None);
        assert_eq!(ids(&all_sparse), ["c", "d"]);
        let even = rank(Retrieval::Hybrid(Fusion::Convex { dense_weight: 0.5 }), lists(), 1, None);
        // c: 0.5 * 0 + 0.5 * 1 = 0.5; a: 0.5 * 1 + 0.5 * 0 = 0.5; tie by id.
        assert_eq!(ids(&even), ["a"]);
    }

    #[test]
    fn single_lists_pass_through_with_their_ranks_and_min_score() {
        let sparse = rank(Retrieval::Sparse, lists(), 10, Some(5.0));
        assert_eq!(ids(&sparse), ["c", "d"]);
        assert_eq!(sparse[1].sparse.map(|r| r.rank), Some(2));
        let dense = rank(Retrieval::Dense, lists(), 1, None);
        assert_eq!((ids(&dense), dense[0].dense.map(|r| r.rank)), (vec!["a"], Some(1)));
    }
}
