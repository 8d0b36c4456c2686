//! The rolling summary of a conversation. Memory keeps a bounded window of recent turns; the
//! turns that fall out of it are folded into a summary, so the agents (in the model's prompt) and
//! the sales team (in the handoff's context card) still know what was said earlier.
//!
//! With a model configured, the fold is one chat call with the prompt in `prompts/summary.md`
//! (the current summary and the dropped turns go in as untrusted data). Without one, or when the
//! call fails, the fold is extractive and deterministic: the prospect's questions, newest kept
//! when the summary grows too long. The context card's summary is therefore never empty: a
//! conversation that never overflowed is summarised extractively from its recent turns.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use crate::llm::{JsonCompletion, LlmClient, LlmError};
use crate::memory::{Turn, TurnRole};

/// The summary prompt shipped with Parley (used when the prompts folder has none).
const DEFAULT_PROMPT: &str = include_str!("../../prompts/summary.md");
/// The heading of an extractive summary's list of questions.
const ASKED: &str = "The prospect asked:";
/// The longest a question is quoted in an extractive summary, in characters.
const QUESTION_CHARS: usize = 160;
/// The most questions an extractive summary keeps (the newest).
const MAX_QUESTIONS: usize = 8;
/// The JSON schema name of the summary call.
pub const SCHEMA_NAME: &str = "conversation_summary";

/// The summary prompt: `prompts/summary.md` in the prompts folder, else the shipped one.
pub fn load_prompt(prompts_dir: &Path) -> anyhow::Result<String> {
    let path = prompts_dir.join("summary.md");
    if !path.exists() {
        return Ok(DEFAULT_PROMPT.to_owned());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the summary prompt: {e}", path.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!("{}: the summary prompt is empty", path.display());
    }
    Ok(text)
}

fn quote(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= QUESTION_CHARS {
        one_line
    } else {
        let cut: String = one_line.chars().take(QUESTION_CHARS).collect();
        format!("{}…", cut.trim_end())
    }
}

/// Folds `turns` into `existing` without a model: the prospect's messages are listed under
/// "The prospect asked:", after any earlier text; the oldest questions go first when there are
/// too many. Deterministic.
pub fn extractive(existing: Option<&str>, turns: &[Turn]) -> String {
    let existing = existing.map(str::trim).unwrap_or("");
    let (preamble, mut questions): (String, Vec<String>) = match existing.split_once(ASKED) {
        Some((before, list)) => (
            before.trim().to_owned(),
            list.lines()
                .filter_map(|l| l.trim().strip_prefix("- "))
                .map(str::to_owned)
                .collect(),
        ),
        None => (existing.to_owned(), Vec::new()),
    };
    for turn in turns.iter().filter(|t| t.role == TurnRole::Prospect) {
        let q = quote(&turn.text);
        if !q.is_empty() && !questions.contains(&q) {
            questions.push(q);
        }
    }
    let keep_from = questions.len().saturating_sub(MAX_QUESTIONS);
    let mut out = preamble;
    if questions.len() > keep_from {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(ASKED);
        for q in &questions[keep_from..] {
            out.push_str("\n- ");
            out.push_str(q);
        }
    }
    out
}

#[derive(Deserialize)]
struct ModelSummary {
    summary: String,
}

/// The user message of the summary call: the current summary and the dropped turns, delimited
/// as data.
pub fn user_prompt(existing: Option<&str>, dropped: &[Turn]) -> String {
    let mut prompt = format!(
        "<current_summary>\n{}\n</current_summary>\n\n<dropped_turns>\n",
        existing.unwrap_or("").trim()
    );
    for turn in dropped {
        let who = match turn.role {
            TurnRole::Prospect => "Customer",
            TurnRole::Bot => "Assistant",
            TurnRole::Staff => "Sales team",
        };
        prompt.push_str(&format!("{who}: {}\n", turn.text));
    }
    prompt.push_str("</dropped_turns>\n");
    prompt
}

/// Folds `dropped` into `existing` with the model.
pub async fn fold_with_model(
    llm: &LlmClient,
    prompt: &str,
    existing: Option<&str>,
    dropped: &[Turn],
) -> Result<(String, JsonCompletion), LlmError> {
    let completion = llm
        .complete_json_with_usage(
            prompt,
            &user_prompt(existing, dropped),
            SCHEMA_NAME,
            Some("The conversation's updated running summary"),
            json!({
                "type": "object",
                "properties": {"summary": {"type": "string"}},
                "required": ["summary"],
                "additionalProperties": false
            }),
        )
        .await?;
    let answer: ModelSummary = serde_json::from_str(crate::llm::strip_code_fence(&completion.text))
        .map_err(|_| LlmError::Malformed("the summary is not the expected JSON"))?;
    let summary = answer.summary.trim().to_owned();
    if summary.is_empty() {
        return Err(LlmError::Malformed("the summary is empty"));
    }
    Ok((summary, completion))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: TurnRole, text: &str) -> Turn {
        Turn {
            role,
            text: text.to_owned(),
            at_ms: 0,
        }
    }

    #[test]
    fn the_extractive_summary_lists_the_prospects_questions() {
        let turns = [
            turn(TurnRole::Prospect, "What is the price of a 2 BHK?"),
            turn(TurnRole::Bot, "A 2 BHK starts at ₹1.12 Cr."),
            turn(TurnRole::Prospect, "Is there a pool?"),
        ];
        let summary = extractive(None, &turns);
        assert_eq!(
            summary,
            "The prospect asked:\n- What is the price of a 2 BHK?\n- Is there a pool?"
        );
        // Folding more keeps the earlier ones, once each, and a model's text before them.
        let more = extractive(
            Some(&summary),
            &[
                turn(TurnRole::Prospect, "Is there a pool?"),
                turn(TurnRole::Prospect, "When is possession?"),
            ],
        );
        assert!(
            more.ends_with("- Is there a pool?\n- When is possession?"),
            "{more}"
        );
        assert_eq!(more.matches("Is there a pool").count(), 1);
        let after_model = extractive(Some("Asha wants a 3 BHK."), &turns[..1]);
        assert!(after_model.starts_with("Asha wants a 3 BHK.\n\nThe prospect asked:"));
    }

    #[test]
    fn the_extractive_summary_keeps_the_newest_questions() {
        let turns: Vec<Turn> = (0..12)
            .map(|i| turn(TurnRole::Prospect, &format!("question {i}")))
            .collect();
        let summary = extractive(None, &turns);
        assert!(!summary.contains("question 3\n") && summary.contains("question 4"));
        assert!(summary.ends_with("question 11"));
    }

    #[test]
    fn the_model_gets_the_dropped_turns_as_delimited_data() {
        let prompt = user_prompt(
            Some("Earlier summary."),
            &[turn(TurnRole::Prospect, "Price of a 2 BHK?")],
        );
        assert!(prompt.contains("<current_summary>\nEarlier summary.\n</current_summary>"));
        assert!(prompt.contains("<dropped_turns>\nCustomer: Price of a 2 BHK?\n</dropped_turns>"));
    }
}
