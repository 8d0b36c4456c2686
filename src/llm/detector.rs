//! Intent detection as the pipeline sees it: one call that never fails.
//!
//! With an LLM configured, its structured answer is used; when the call fails (timeout, rate
//! limit, transport error, malformed or unknown answer) the offline classifier answers instead
//! and the prediction says so (`source: offline_fallback`). Without an LLM the offline
//! classifier answers alone. Failures are logged by kind only: never the message text.

use std::sync::Arc;

use super::catalog::IntentCatalog;
use super::classifier::IntentClassifier;
use super::openai::LlmClient;
use super::prediction::{IntentPrediction, PredictionSource};

/// The offline classifier, optionally fronted by an LLM. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IntentDetector {
    classifier: Arc<IntentClassifier>,
    catalog: Arc<IntentCatalog>,
    llm: Option<LlmClient>,
}

impl IntentDetector {
    pub fn new(
        classifier: IntentClassifier,
        catalog: &IntentCatalog,
        llm: Option<LlmClient>,
    ) -> Self {
        Self {
            classifier: Arc::new(classifier),
            catalog: Arc::new(catalog.clone()),
            llm,
        }
    }

    /// The offline classifier's prediction alone (cheap: used on parts of a message).
    pub fn classify_offline(&self, text: &str) -> IntentPrediction {
        self.classifier.predict(text)
    }

    /// Whether an LLM answers first.
    pub fn has_llm(&self) -> bool {
        self.llm.is_some()
    }

    /// The intent of `text`: the LLM's when it answers validly, the offline classifier's
    /// otherwise.
    pub async fn detect(&self, text: &str) -> IntentPrediction {
        let Some(llm) = &self.llm else {
            return self.classifier.predict(text);
        };
        let started = std::time::Instant::now();
        match llm.classify_intent(text, &self.catalog).await {
            Ok(prediction) => {
                tracing::debug!(
                    intent.best = %prediction.best,
                    intent.confidence = prediction.confidence,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "the language model classified a message"
                );
                prediction
            }
            Err(error) => {
                tracing::warn!(
                    error.kind = error.kind(),
                    error.message = %error,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "intent detection fell back to the offline classifier"
                );
                IntentPrediction {
                    source: PredictionSource::OfflineFallback,
                    ..self.classifier.predict(text)
                }
            }
        }
    }
}
