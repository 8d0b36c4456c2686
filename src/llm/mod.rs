//! Language understanding: the offline intent classifier and the OpenAI-compatible client.
//!
//! - [`catalog`]: the intents and their examples, from `prompts/intents.toml`;
//! - [`features`] and [`classifier`]: the offline classifier (TF-IDF and static word-piece
//!   embeddings from [`embedding`], then logistic regression), trained at start-up from the
//!   catalogue; it abstains below the catalogue's threshold;
//! - [`openai`]: intent classification through any OpenAI-compatible chat API, with a JSON
//!   schema for the answer;
//! - [`detector`]: what the pipeline calls: the LLM when configured, the offline classifier
//!   when it is not or when the LLM fails;
//! - [`eval`]: the metrics of `parley eval intents`.

pub mod catalog;
pub mod classifier;
pub mod detector;
pub mod embedding;
pub mod eval;
pub mod features;
pub mod openai;
pub mod prediction;

pub use catalog::{IntentCatalog, IntentSpec, LabeledText};
pub use classifier::{IntentClassifier, TrainConfig};
pub use detector::IntentDetector;
pub use features::FeatureConfig;
pub use openai::{JsonCompletion, LlmClient, LlmError, LlmSettings, strip_code_fence};
pub use prediction::{IntentPrediction, PredictionSource};
