//! Recognising consent commands in an inbound message: single-word keywords (STOP, START, HELP
//! and the tenant's equivalents), plain-language opt-out phrases, and the intent classifier's
//! `opt_out` prediction backed by an opt-out cue word. Matching is done on a normalised form:
//! trimmed, accents and punctuation stripped, case folded, so "Stop!", "stop." and "ARRÊT" match.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::ConsentSettings;

/// What an inbound message asks for, as far as consent goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentCommand {
    /// Stop messaging me on this channel. `matched` is the normalised keyword or phrase.
    OptOut { how: MatchKind, matched: String },
    /// Opt back in (acts only for a contact who is opted out).
    OptIn { matched: String },
    /// Send the help text.
    Help { matched: String },
}

/// How an opt-out was recognised (recorded as the ledger's source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Keyword,
    Phrase,
    Classifier,
}

/// Lowercase words without accents or punctuation, separated by single spaces.
pub fn normalise(text: &str) -> String {
    let stripped: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .flat_map(char::to_lowercase)
        .collect();
    stripped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tenant's consent vocabulary, normalised once.
#[derive(Debug, Clone)]
pub struct ConsentVocabulary {
    opt_out: Vec<String>,
    opt_in: Vec<String>,
    help: Vec<String>,
    phrases: Vec<String>,
    cues: Vec<String>,
    classifier_threshold: f32,
}

impl ConsentVocabulary {
    pub fn new(settings: &ConsentSettings) -> Self {
        let norm = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|w| normalise(w))
                .filter(|w| !w.is_empty())
                .collect()
        };
        Self {
            opt_out: norm(&settings.opt_out_keywords),
            opt_in: norm(&settings.opt_in_keywords),
            help: norm(&settings.help_keywords),
            phrases: norm(&settings.opt_out_phrases),
            cues: norm(&settings.opt_out_cues),
            classifier_threshold: settings.classifier_threshold,
        }
    }

    /// The command a message's keywords or phrases express, without the classifier.
    pub fn command(&self, text: &str) -> Option<ConsentCommand> {
        let normalised = normalise(text);
        if normalised.is_empty() {
            return None;
        }
        if !normalised.contains(' ') {
            let word = normalised;
            if self.opt_out.contains(&word) {
                return Some(ConsentCommand::OptOut {
                    how: MatchKind::Keyword,
                    matched: word,
                });
            }
            if self.opt_in.contains(&word) {
                return Some(ConsentCommand::OptIn { matched: word });
            }
            if self.help.contains(&word) {
                return Some(ConsentCommand::Help { matched: word });
            }
            return None;
        }
        // "opt out", "stop all": a keyword split in two still counts as the keyword.
        let words: Vec<&str> = normalised.split(' ').collect();
        if words.len() == 2 && self.opt_out.contains(&words.concat()) {
            return Some(ConsentCommand::OptOut {
                how: MatchKind::Keyword,
                matched: words.concat(),
            });
        }
        let padded = format!(" {normalised} ");
        self.phrases
            .iter()
            .find(|phrase| padded.contains(&format!(" {phrase} ")))
            .map(|phrase| ConsentCommand::OptOut {
                how: MatchKind::Phrase,
                matched: phrase.clone(),
            })
    }

    /// Whether the classifier's prediction, for this text, counts as an opt-out request: the
    /// intent is `opt_out`, confident enough, and the text carries an opt-out cue word (so a
    /// confident but wrong prediction on "stop by the office" style text needs more than one
    /// signal).
    pub fn classifier_opt_out(&self, text: &str, intent: Option<&str>, confidence: f32) -> bool {
        if intent != Some("opt_out") || confidence < self.classifier_threshold {
            return false;
        }
        let normalised = normalise(text);
        normalised
            .split(' ')
            .any(|word| self.cues.iter().any(|cue| cue == word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> ConsentVocabulary {
        ConsentVocabulary::new(&ConsentSettings::default())
    }

    fn is_opt_out(text: &str) -> bool {
        matches!(
            vocabulary().command(text),
            Some(ConsentCommand::OptOut { .. })
        )
    }

    #[test]
    fn normalising_strips_case_accents_and_punctuation() {
        assert_eq!(normalise("  Stop!! "), "stop");
        assert_eq!(normalise("ARRÊT."), "arret");
        assert_eq!(normalise("Don't text me, please"), "dont text me please");
        assert_eq!(normalise("¡Baja!"), "baja");
        assert_eq!(normalise("stop 🙏"), "stop");
    }

    #[test]
    fn every_default_opt_out_keyword_opts_out_in_any_case() {
        for word in ConsentSettings::default().opt_out_keywords {
            for variant in [word.clone(), word.to_lowercase(), format!(" {word}. ")] {
                assert!(is_opt_out(&variant), "{variant:?} should opt out");
            }
        }
        assert!(is_opt_out("Arrêt"));
        assert!(is_opt_out("Opt-out"), "a keyword split in two");
        assert!(is_opt_out("stop all"));
    }

    #[test]
    fn opt_in_and_help_keywords_are_recognised() {
        let v = vocabulary();
        for word in ["START", "yes", "Unstop!"] {
            assert!(
                matches!(v.command(word), Some(ConsentCommand::OptIn { .. })),
                "{word}"
            );
        }
        for word in ["HELP", "info", "Help?"] {
            assert!(
                matches!(v.command(word), Some(ConsentCommand::Help { .. })),
                "{word}"
            );
        }
    }

    #[test]
    fn plain_language_requests_opt_out() {
        for text in [
            "please stop messaging me",
            "Don't text me again",
            "unsubscribe me",
            "Please remove me from your list.",
            "STOP TEXTING ME!!!",
            "I want to opt out",
            "no more messages please",
        ] {
            assert!(is_opt_out(text), "{text:?} should opt out");
        }
    }

    #[test]
    fn near_misses_do_not_opt_out() {
        for text in [
            "Stop by the office tomorrow?",
            "Can I stop the payment plan halfway?",
            "When does the offer end?",
            "I want to cancel my site visit and book another",
            "Yes I am interested in the 3 BHK",
            "I quit my job, now looking to buy",
            "the bus stop is near the project?",
            "Is there a help desk on site?",
            "How do I opt out of the parking slot?",
        ] {
            assert_eq!(vocabulary().command(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_classifier_path_needs_confidence_and_a_cue() {
        let v = vocabulary();
        assert!(v.classifier_opt_out("please quit sending these", Some("opt_out"), 0.9));
        assert!(!v.classifier_opt_out("please quit sending these", Some("opt_out"), 0.5));
        assert!(!v.classifier_opt_out("Stop by the office?", Some("greeting"), 0.99));
        assert!(!v.classifier_opt_out("not interested anymore", Some("opt_out"), 0.95));
    }

    #[test]
    fn tenants_can_add_their_own_keywords() {
        let settings = ConsentSettings {
            opt_out_keywords: vec!["ABMELDEN".to_owned()],
            ..ConsentSettings::default()
        };
        let v = ConsentVocabulary::new(&settings);
        assert!(matches!(
            v.command("abmelden"),
            Some(ConsentCommand::OptOut { .. })
        ));
        assert_eq!(
            v.command("stop"),
            None,
            "the tenant's list replaces the default"
        );
    }
}
