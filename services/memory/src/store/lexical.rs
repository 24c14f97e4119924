//! The BM25 side of a record: its text as a sparse vector, beside the dense one.
//!
//! Qdrant Edge's own BM25 (`bm25_embed`, the same pipeline as the Qdrant server's BM25
//! inference): Unicode word boundaries, lowercasing, English stop words, Snowball stemming,
//! each term hashed (murmur3) to a stable index, so replicas and stores share no vocabulary.
//! A document's values are BM25's saturated term frequencies with its length normalised
//! against [`AVG_LEN`]; a query's are 1 per term. The inverse document frequency is not
//! stored: the named sparse vector carries Qdrant's IDF modifier, so each shard weighs terms
//! by its own document counts at search time (over every namespace the shard holds).

use std::sync::OnceLock;

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::ordered_float::NotNan;
use qdrant_edge::SparseVector;

/// Name of the sparse vector in both stores.
pub const SPARSE_VECTOR: &str = "bm25";
/// Term-frequency saturation (BM25's k1; the usual 1.2).
pub const K1: f64 = 1.2;
/// Length normalisation (BM25's b; the usual 0.75).
pub const B: f64 = 0.75;
/// The length, in terms after stop words, that a text's length is normalised against: about
/// the mean of the gateway's chunks (at most 256 encoder tokens each).
pub const AVG_LEN: f64 = 128.0;

fn model() -> &'static EdgeBm25 {
    static MODEL: OnceLock<EdgeBm25> = OnceLock::new();
    MODEL.get_or_init(|| {
        let config = EdgeBm25Config {
            k: NotNan::new(K1).expect("a number"),
            b: NotNan::new(B).expect("a number"),
            avg_len: NotNan::new(AVG_LEN).expect("a number"),
            ..Default::default()
        };
        EdgeBm25::new(config).expect("the BM25 constants are valid")
    })
}

/// The stored sparse vector of a record's text.
pub fn document(text: &str) -> SparseVector {
    model().embed_document(text)
}

/// The sparse query of a search's text.
pub fn query(text: &str) -> SparseVector {
    model().embed_query(text)
}

/// What the stores record of this scheme: a data directory or collection made with another
/// would hold incomparable vectors.
pub fn scheme() -> String {
    format!("bm25 k1={K1} b={B} avg_len={AVG_LEN} english-snowball murmur3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_drops_stop_words_and_hashes_stably() {
        let a = query("The running dogs");
        let b = query("dog runs");
        assert_eq!(a.indices, b.indices, "stemmed, stop words dropped");
        assert_eq!(a.indices.len(), 2);
        assert!(query("the of and").indices.is_empty());
        let doc = document("dog dog dog cat");
        let weight = |v: &SparseVector, term: &str| {
            let id = query(term).indices[0];
            v.indices.iter().position(|i| *i == id).map(|p| v.values[p]).unwrap()
        };
        assert!(weight(&doc, "dog") > weight(&doc, "cat"), "{doc:?}");
    }
}
