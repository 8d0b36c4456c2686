//! What intent detection answers: the intent (or an abstention), how sure it is, and where the
//! answer came from. Shared by the offline classifier, the LLM client and the detector.

use serde::Serialize;

/// Who produced a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionSource {
    /// The offline classifier, with no LLM configured.
    Offline,
    /// The LLM's structured answer.
    Llm,
    /// The offline classifier, because the LLM failed, timed out or answered nonsense.
    OfflineFallback,
}

impl PredictionSource {
    /// The name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PredictionSource::Offline => "offline",
            PredictionSource::Llm => "llm",
            PredictionSource::OfflineFallback => "offline_fallback",
        }
    }
}

/// The detected intent of one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentPrediction {
    /// The intent to act on; `None` when detection abstained: the best label is out of scope
    /// (for example `other`) or its confidence is below the threshold.
    pub intent: Option<String>,
    /// The top label even when abstaining (`out_of_scope` when the LLM said so).
    pub best: String,
    /// Confidence in `best`, 0..1 (the classifier's probability, or the LLM's own figure).
    pub confidence: f32,
    /// The second-best label and its confidence, when known.
    pub runner_up: Option<(String, f32)>,
    /// Entities the LLM extracted (`{}` offline).
    pub entities: serde_json::Value,
    pub source: PredictionSource,
}

impl IntentPrediction {
    /// Whether detection declined to name an intent.
    pub fn abstained(&self) -> bool {
        self.intent.is_none()
    }
}
