//! Retrieval quality: recall@1, recall@5 and mean reciprocal rank over labelled questions. A
//! question's expected answer is a document (its name, or its id) or a passage (a chunk id); a
//! retrieved passage is relevant when it is, or belongs to, that target.

use serde::Serialize;

/// One labelled question.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledQuestion {
    pub question: String,
    /// A document name, a document id or a chunk id.
    pub expected: String,
}

/// The metrics of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetrievalReport {
    pub questions: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub mrr: f64,
}

/// What a search returned for a question, as identifiers to compare with the label.
#[derive(Debug, Clone)]
pub struct RankedResult {
    pub chunk_id: String,
    pub document_id: String,
    pub document_name: String,
}

impl RankedResult {
    fn matches(&self, expected: &str) -> bool {
        let expected = expected.trim();
        self.chunk_id.eq_ignore_ascii_case(expected)
            || self.document_id.eq_ignore_ascii_case(expected)
            || self.document_name.eq_ignore_ascii_case(expected)
    }
}

/// The 1-based rank of the first relevant result, if any.
pub fn first_relevant(results: &[RankedResult], expected: &str) -> Option<usize> {
    results
        .iter()
        .position(|r| r.matches(expected))
        .map(|i| i + 1)
}

/// Aggregates ranks (one per question, `None` when nothing relevant came back).
pub fn report(ranks: &[Option<usize>]) -> RetrievalReport {
    let n = ranks.len().max(1) as f64;
    let within = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
    RetrievalReport {
        questions: ranks.len(),
        recall_at_1: within(1),
        recall_at_5: within(5),
        mrr: ranks
            .iter()
            .map(|r| r.map_or(0.0, |r| 1.0 / r as f64))
            .sum::<f64>()
            / n,
    }
}

/// Reads `question,expected` rows (a header row is required; the second column may be named
/// `expected`, `document`, `expected_document` or `passage_id`).
pub fn read_questions(bytes: &[u8]) -> Result<Vec<LabelledQuestion>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let question = find(&["question"]).ok_or("the CSV needs a `question` column")?;
    let expected = find(&[
        "expected",
        "document",
        "expected_document",
        "passage_id",
        "expected_passage",
    ])
    .ok_or("the CSV needs an `expected` (document or passage id) column")?;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("row {}: {e}", i + 2))?;
        let q = record.get(question).unwrap_or("").to_owned();
        let e = record.get(expected).unwrap_or("").to_owned();
        if q.is_empty() || e.is_empty() {
            return Err(format!(
                "row {}: question and expected must both be filled",
                i + 2
            ));
        }
        out.push(LabelledQuestion {
            question: q,
            expected: e,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_mrr_follow_their_definitions() {
        let r = report(&[Some(1), Some(3), None, Some(6)]);
        assert_eq!(r.recall_at_1, 0.25);
        assert_eq!(r.recall_at_5, 0.5);
        let mrr = (1.0 + 1.0 / 3.0 + 0.0 + 1.0 / 6.0) / 4.0;
        assert!((r.mrr - mrr).abs() < 1e-12);
    }

    #[test]
    fn a_label_matches_a_document_name_or_id_or_a_chunk_id() {
        let results = vec![
            RankedResult {
                chunk_id: "c1".into(),
                document_id: "d1".into(),
                document_name: "faq.csv".into(),
            },
            RankedResult {
                chunk_id: "c2".into(),
                document_id: "d2".into(),
                document_name: "pricing.md".into(),
            },
        ];
        assert_eq!(first_relevant(&results, "pricing.md"), Some(2));
        assert_eq!(first_relevant(&results, "c1"), Some(1));
        assert_eq!(first_relevant(&results, "D2"), Some(2));
        assert_eq!(first_relevant(&results, "other"), None);
    }
}
