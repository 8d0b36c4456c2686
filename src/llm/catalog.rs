//! The intent catalogue: the intents a business's agents serve, each with a description and
//! example utterances, read from `prompts/intents.toml` (or built from labelled CSV rows for
//! evaluation).
//!
//! The catalogue is the only training data of the offline classifier and the label set the LLM
//! is allowed to answer with, so a marketer changes routing by editing one file. The file format
//! is documented at the top of `prompts/intents.toml`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::anyhow;
use serde::Deserialize;

/// Abstention threshold used when the catalogue does not set one (CSV training).
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Labels that mean "out of scope" when a catalogue is built from labelled rows: the CLINC150
/// convention (`oos`), the demo catalogue's catch-all (`other`) and the LLM's own answer.
pub const CONVENTIONAL_OUT_OF_SCOPE_LABELS: [&str; 3] = ["oos", "other", "out_of_scope"];

/// One labelled utterance, a row of a `text,label` CSV file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabeledText {
    pub text: String,
    pub label: String,
}

/// One intent: its name (the label), what it covers, and example utterances.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub examples: Vec<String>,
}

/// The intents, their examples, the default abstention threshold and which intents mean "out of
/// scope" (the bot should not handle them).
#[derive(Debug, Clone, PartialEq)]
pub struct IntentCatalog {
    intents: Vec<IntentSpec>,
    threshold: f32,
    out_of_scope_labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    threshold: Option<f32>,
    #[serde(default)]
    out_of_scope_labels: Vec<String>,
    #[serde(default)]
    intent: Vec<IntentSpec>,
}

impl IntentCatalog {
    /// Reads and validates a catalogue file. Every failure is one sentence that starts with the
    /// file name, e.g. `prompts/intents.toml: intent "pricing" has no examples`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let name = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow!("{name}: cannot be read: {e}"))?;
        Self::parse(&text).map_err(|problem| anyhow!("{name}: {problem}"))
    }

    /// Parses catalogue text; the error is the problem without the file name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let message = e.message().trim().trim_end_matches('.').replace('\n', " ");
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        let threshold = file.threshold.unwrap_or(DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(format!("threshold {threshold} is not between 0 and 1"));
        }
        if file.intent.len() < 2 {
            return Err("at least two [[intent]] tables are needed to classify anything".into());
        }
        let mut seen = HashSet::new();
        for intent in &file.intent {
            let name = intent.name.trim();
            if name.is_empty() {
                return Err("an intent has an empty name".into());
            }
            if name == "out_of_scope" {
                return Err(
                    "the intent name \"out_of_scope\" is reserved for the LLM's abstention".into(),
                );
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!(
                    "intent name \"{name}\" must use only lowercase letters, digits and underscores"
                ));
            }
            if !seen.insert(name) {
                return Err(format!("intent \"{name}\" is defined twice"));
            }
            if intent.examples.iter().all(|e| e.trim().is_empty()) {
                return Err(format!("intent \"{name}\" has no examples"));
            }
        }
        for label in &file.out_of_scope_labels {
            if !seen.contains(label.as_str()) {
                return Err(format!(
                    "out_of_scope_labels names \"{label}\", which is not an intent"
                ));
            }
        }
        if file.out_of_scope_labels.len() >= file.intent.len() {
            return Err("every intent is out of scope, so nothing would ever be handled".into());
        }
        Ok(Self {
            intents: file.intent,
            threshold,
            out_of_scope_labels: file.out_of_scope_labels,
        })
    }

    /// A catalogue from labelled rows (CSV training): one intent per distinct label, in order of
    /// first appearance, the default threshold, and the conventional out-of-scope labels
    /// ([`CONVENTIONAL_OUT_OF_SCOPE_LABELS`]) that occur among the rows.
    pub fn from_labeled(rows: Vec<LabeledText>) -> Self {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut intents: Vec<IntentSpec> = Vec::new();
        for row in rows {
            let label = row.label.trim().to_string();
            if label.is_empty() || row.text.trim().is_empty() {
                continue;
            }
            let i = *index.entry(label.clone()).or_insert_with(|| {
                intents.push(IntentSpec {
                    name: label,
                    description: String::new(),
                    examples: Vec::new(),
                });
                intents.len() - 1
            });
            intents[i].examples.push(row.text);
        }
        let out_of_scope_labels = CONVENTIONAL_OUT_OF_SCOPE_LABELS
            .iter()
            .filter(|l| index.contains_key(**l))
            .map(|l| l.to_string())
            .collect();
        Self {
            intents,
            threshold: DEFAULT_THRESHOLD,
            out_of_scope_labels,
        }
    }

    /// Intent names, in catalogue order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.intents.iter().map(|i| i.name.as_str())
    }

    /// The default abstention threshold: below this confidence the classifier abstains.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The same catalogue with another abstention threshold (clamped to 0..1).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold.clamp(0.0, 1.0);
        self
    }

    /// The intents, in catalogue order.
    pub fn intents(&self) -> &[IntentSpec] {
        &self.intents
    }

    /// Intents that mean "not for this bot": predicting one is an abstention.
    pub fn out_of_scope_labels(&self) -> &[String] {
        &self.out_of_scope_labels
    }

    /// Whether `label` is one of the out-of-scope intents.
    pub fn is_out_of_scope(&self, label: &str) -> bool {
        self.out_of_scope_labels.iter().any(|l| l == label)
    }

    /// Whether `label` is an intent of this catalogue.
    pub fn contains(&self, label: &str) -> bool {
        self.intents.iter().any(|i| i.name == label)
    }

    /// Number of example utterances over all intents.
    pub fn example_count(&self) -> usize {
        self.intents.iter().map(|i| i.examples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
threshold = 0.4
out_of_scope_labels = ["other"]

[[intent]]
name = "greeting"
description = "Says hello"
examples = ["hi", "hello there"]

[[intent]]
name = "other"
description = "Off-topic"
examples = ["what is the capital of peru"]
"#;

    #[test]
    fn a_valid_catalogue_keeps_its_intents_threshold_and_out_of_scope_labels() {
        let catalog = IntentCatalog::parse(GOOD).unwrap();
        assert_eq!(catalog.names().collect::<Vec<_>>(), ["greeting", "other"]);
        assert_eq!(catalog.threshold(), 0.4);
        assert!(catalog.is_out_of_scope("other"));
        assert!(!catalog.is_out_of_scope("greeting"));
        assert_eq!(catalog.example_count(), 3);
    }

    #[test]
    fn a_toml_syntax_error_names_the_line_in_one_sentence() {
        let err = IntentCatalog::parse("threshold = 0.4\n[[intent]\nname = 1").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn an_intent_without_examples_is_rejected_by_name() {
        let text = GOOD.replace(r#"examples = ["hi", "hello there"]"#, "examples = []");
        let err = IntentCatalog::parse(&text).unwrap_err();
        assert_eq!(err, "intent \"greeting\" has no examples");
    }

    #[test]
    fn duplicate_names_unknown_out_of_scope_labels_and_bad_thresholds_are_rejected() {
        let dup = GOOD.replace("name = \"other\"", "name = \"greeting\"");
        assert!(
            IntentCatalog::parse(&dup)
                .unwrap_err()
                .contains("defined twice")
        );
        let unknown = GOOD.replace("[\"other\"]", "[\"nope\"]");
        assert!(
            IntentCatalog::parse(&unknown)
                .unwrap_err()
                .contains("\"nope\"")
        );
        let bad = GOOD.replace("threshold = 0.4", "threshold = 1.5");
        assert!(
            IntentCatalog::parse(&bad)
                .unwrap_err()
                .contains("between 0 and 1")
        );
        let typo = GOOD.replace("threshold = 0.4", "treshold = 0.4");
        assert!(
            IntentCatalog::parse(&typo)
                .unwrap_err()
                .contains("treshold")
        );
    }

    #[test]
    fn load_prefixes_the_problem_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.toml");
        std::fs::write(&path, "threshold = \"high\"").unwrap();
        let err = IntentCatalog::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn labelled_rows_group_by_label_and_mark_oos_as_out_of_scope() {
        let rows = [
            ("hi", "greeting"),
            ("weather in paris", "oos"),
            ("hello", "greeting"),
        ]
        .map(|(text, label)| LabeledText {
            text: text.into(),
            label: label.into(),
        })
        .to_vec();
        let catalog = IntentCatalog::from_labeled(rows);
        assert_eq!(catalog.names().collect::<Vec<_>>(), ["greeting", "oos"]);
        assert_eq!(catalog.intents()[0].examples, ["hi", "hello"]);
        assert_eq!(catalog.out_of_scope_labels(), ["oos"]);
        assert_eq!(catalog.threshold(), DEFAULT_THRESHOLD);
    }
}
