//! BM25 sparse vectors, from Qdrant Edge's embedder (English stop words and stemming). Both index
//! backends use it: the index applies IDF at query time (`Modifier::Idf`), so a chunk's vector
//! depends on the chunk alone and never needs recomputing when others arrive.

use qdrant_edge::SparseVector;
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};

/// The BM25 embedder.
#[derive(Debug)]
pub struct Bm25 {
    model: EdgeBm25,
}

impl Bm25 {
    /// `average_tokens`: the chunks' average length in words (the chunk target is a good guess).
    pub fn new(average_tokens: usize) -> Self {
        let config = EdgeBm25Config {
            avg_len: ordered_float_of(average_tokens.max(1) as f64),
            language: Some("english".into()),
            ..EdgeBm25Config::default()
        };
        let model = EdgeBm25::new(config).expect("english is a supported BM25 language");
        Bm25 { model }
    }

    pub fn document(&self, text: &str) -> SparseVector {
        self.model.embed_document(text)
    }

    pub fn query(&self, text: &str) -> SparseVector {
        self.model.embed_query(text)
    }
}

fn ordered_float_of(value: f64) -> qdrant_edge::external::ordered_float::NotNan<f64> {
    qdrant_edge::external::ordered_float::NotNan::new(value).expect("a finite number")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_share_terms_with_the_documents_that_contain_them() {
        let bm25 = Bm25::new(100);
        let doc = bm25.document("The booking amount is fully refundable within 15 days.");
        let query = bm25.query("is booking refundable?");
        let shared = query
            .indices
            .iter()
            .filter(|i| doc.indices.contains(i))
            .count();
        assert_eq!(shared, 2, "booking and refundable; `is` is a stop word");
    }
}
