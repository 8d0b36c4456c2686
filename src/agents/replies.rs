//! Fixed replies per intent, rendered from minijinja templates in `prompts/replies.toml`. A
//! template that does not parse, or a catalogue intent without a reply, stops start-up with the
//! file name and the problem.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::Environment;
use serde::{Deserialize, Serialize};

/// The key used when the classifier abstains.
pub const ABSTAIN: &str = "abstain";

/// Values a reply template can use.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyContext<'a> {
    /// The tenant's name.
    pub business: &'a str,
    /// The prospect's name, empty when unknown.
    pub name: &'a str,
}

/// The loaded reply templates.
#[derive(Debug)]
pub struct ReplyBook {
    env: Environment<'static>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepliesFile {
    replies: BTreeMap<String, String>,
}

impl ReplyBook {
    /// Loads `path`, checking that every name in `required` (the intents) and `abstain` has a
    /// reply that renders.
    pub fn load<'a>(
        path: &Path,
        required: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), required)
    }

    fn parse<'a>(
        text: &str,
        origin: &str,
        required: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<Self> {
        let file: RepliesFile = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin} is not valid: {}", e.message()))?;
        let mut env = Environment::new();
        for (name, template) in file.replies {
            let template = template.trim().to_owned();
            env.add_template_owned(name.clone(), template)
                .map_err(|e| anyhow::anyhow!("{origin}: the reply `{name}` does not parse: {e}"))?;
        }
        let book = Self { env };
        let probe = ReplyContext {
            business: "Business",
            name: "",
        };
        for name in required.into_iter().chain([ABSTAIN]) {
            book.render(name, &probe).map_err(|e| {
                anyhow::anyhow!("{origin}: no usable reply for the intent `{name}`: {e}")
            })?;
        }
        Ok(book)
    }

    /// The reply for `intent` (or `abstain`), rendered.
    pub fn render(&self, intent: &str, context: &ReplyContext<'_>) -> anyhow::Result<String> {
        let template = self.env.get_template(intent)?;
        Ok(template.render(context)?.trim().to_owned())
    }

    /// The reply for an intent, or the abstention reply when the intent is unknown or absent.
    pub fn reply_for(&self, intent: Option<&str>, context: &ReplyContext<'_>) -> String {
        intent
            .and_then(|i| self.render(i, context).ok())
            .or_else(|| self.render(ABSTAIN, context).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_replies_cover_every_intent() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/replies.toml");
        let book = ReplyBook::load(
            &path,
            [
                "greeting",
                "pricing",
                "product_info",
                "scheduling",
                "support",
                "human_request",
                "smalltalk",
                "opt_out",
                "other",
            ],
        )
        .unwrap();
        let hello = book.reply_for(
            Some("greeting"),
            &ReplyContext {
                business: "Skyline Habitat",
                name: "Asha",
            },
        );
        assert!(
            hello.starts_with("Hi Asha! Welcome to Skyline Habitat."),
            "{hello}"
        );
    }

    #[test]
    fn a_missing_reply_is_named() {
        let err = ReplyBook::parse("[replies]\nabstain = \"?\"", "r.toml", ["pricing"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.toml") && err.contains("`pricing`"), "{err}");
    }

    #[test]
    fn a_broken_template_is_named() {
        let err = ReplyBook::parse(
            "[replies]\nabstain = \"?\"\npricing = \"{% if %}\"",
            "r.toml",
            ["pricing"],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`pricing` does not parse"), "{err}");
    }

    #[test]
    fn an_unknown_intent_gets_the_abstention_reply() {
        let book = ReplyBook::parse("[replies]\nabstain = \"Sorry?\"", "r.toml", []).unwrap();
        let ctx = ReplyContext {
            business: "B",
            name: "",
        };
        assert_eq!(book.reply_for(Some("weather"), &ctx), "Sorry?");
        assert_eq!(book.reply_for(None, &ctx), "Sorry?");
    }
}
