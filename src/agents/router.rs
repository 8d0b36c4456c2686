//! Routing helpers: finding several questions in one message (a complex request that goes to a
//! person), and the confidence of an answer computed from its parts, not asked of a model.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::llm::IntentDetector;

/// Intents the specialist agents answer; two of them in one message make it complex.
const AGENT_INTENTS: &[&str] = &["pricing", "product_info", "scheduling", "support"];

/// Splits a message into its questions or clauses.
fn clauses(text: &str) -> Vec<&str> {
    text.split(['?', '.', '!', ';', '\n'])
        .flat_map(|s| s.split(" and also "))
        .flat_map(|s| s.split(" also "))
        .map(str::trim)
        .filter(|s| s.split_whitespace().count() >= 3)
        .collect()
}

/// The distinct agent intents found in the message's clauses (offline classifier, confident
/// predictions only). Two or more means the message asks several things at once.
pub fn distinct_intents(detector: &IntentDetector, text: &str) -> BTreeSet<String> {
    let parts = clauses(text);
    if parts.len() < 2 {
        return BTreeSet::new();
    }
    parts
        .into_iter()
        .filter_map(|clause| detector.classify_offline(clause).intent)
        .filter(|intent| AGENT_INTENTS.contains(&intent.as_str()))
        .collect()
}

/// Why the bot trusts (or does not trust) an answer; stored with the reply and shown to staff.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConfidenceFactors {
    /// The intent classifier's confidence.
    pub classifier: f32,
    /// How much of the question the retrieved passages answer (0 to 1).
    pub retrieval: f32,
    /// Whether the answer rests on retrieved passages (cited, and only retrieved ones).
    pub grounded: bool,
    /// The combination the handoff threshold is compared with.
    pub confidence: f32,
}

impl ConfidenceFactors {
    pub fn new(classifier: f32, retrieval: f32, grounded: bool) -> Self {
        let classifier = classifier.clamp(0.0, 1.0);
        let retrieval = retrieval.clamp(0.0, 1.0);
        let confidence = if grounded {
            0.3 * classifier + 0.45 * retrieval + 0.25
        } else {
            // An ungrounded answer is never trusted more than half.
            (0.3 * classifier + 0.45 * retrieval).min(0.5)
        };
        Self {
            classifier,
            retrieval,
            grounded,
            confidence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_rewards_coverage_and_grounding() {
        let answered = ConfidenceFactors::new(0.7, 0.9, true);
        assert!(answered.confidence >= 0.7, "{answered:?}");
        let unanswerable = ConfidenceFactors::new(0.7, 0.3, true);
        assert!(unanswerable.confidence < 0.7, "{unanswerable:?}");
        let ungrounded = ConfidenceFactors::new(1.0, 1.0, false);
        assert!(ungrounded.confidence <= 0.5);
    }

    #[test]
    fn messages_split_into_their_questions() {
        assert_eq!(
            clauses("What is the price of a 3 BHK? Can I visit on Saturday morning?"),
            [
                "What is the price of a 3 BHK",
                "Can I visit on Saturday morning"
            ]
        );
        assert!(clauses("Price of 3 BHK?").len() < 2);
    }
}
