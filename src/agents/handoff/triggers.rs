//! What makes the bot step aside on its own: an explicit ask for a person (the classifier's
//! `human_request`, or a phrase), and anger or repeated frustration (a small lexicon: strong words
//! hand off at once, milder ones when they recur in the prospect's recent messages).

use crate::consent::normalise;

const HUMAN_PHRASES: &[&str] = &[
    "talk to a human",
    "speak to a human",
    "talk to a person",
    "speak to a person",
    "real person",
    "talk to someone",
    "speak to someone",
    "talk to an agent",
    "speak to an agent",
    "connect me to an agent",
    "human agent",
    "talk to customer care",
    "speak to customer care",
    "connect me to customer care",
    "call me back",
    "sales executive",
    "your manager",
];

const ANGRY: &[&str] = &[
    "useless",
    "ridiculous",
    "pathetic",
    "terrible",
    "worst",
    "scam",
    "fraud",
    "cheated",
    "angry",
    "furious",
    "disgusting",
    "nonsense",
    "rubbish",
    "stupid",
    "idiot",
    "wtf",
    "hate",
];

const FRUSTRATED: &[&str] = &[
    "not helpful",
    "doesnt help",
    "didnt help",
    "not what i asked",
    "you dont understand",
    "you are not understanding",
    "already told you",
    "i already asked",
    "still waiting",
    "again and again",
    "makes no sense",
    "confusing",
    "frustrating",
    "annoying",
    "waste of time",
];

fn contains_phrase(normalised: &str, phrase: &str) -> bool {
    format!(" {normalised} ").contains(&format!(" {phrase} "))
}

/// Whether the message asks for a person in so many words.
pub fn asks_for_a_person(text: &str) -> bool {
    let n = normalise(text);
    HUMAN_PHRASES.iter().any(|p| contains_phrase(&n, p))
}

/// How upset a message reads: 2 for anger, 1 for frustration, 0 otherwise.
pub fn upset_level(text: &str) -> u8 {
    let n = normalise(text);
    let shouting = text.chars().filter(|c| c.is_alphabetic()).count() >= 12
        && text
            .chars()
            .filter(|c| c.is_alphabetic())
            .all(|c| c.is_uppercase());
    if n.split(' ').any(|w| ANGRY.contains(&w)) || (shouting && text.contains('!')) {
        2
    } else if FRUSTRATED.iter().any(|p| contains_phrase(&n, p)) || text.contains("???") {
        1
    } else {
        0
    }
}

/// Anger now, or frustration now and in one of the prospect's recent messages.
pub fn is_frustrated<'a>(text: &str, earlier: impl IntoIterator<Item = &'a str>) -> bool {
    match upset_level(text) {
        2 => true,
        1 => earlier.into_iter().any(|t| upset_level(t) >= 1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_requests_for_a_person_are_seen() {
        assert!(asks_for_a_person("Can I talk to a human please?"));
        assert!(asks_for_a_person("I want a REAL person"));
        assert!(!asks_for_a_person("Is the project near a metro station?"));
        assert!(asks_for_a_person("Please connect me to customer care"));
        // Asking about customer care is a question, not a request for a person.
        assert!(!asks_for_a_person("How soon does customer care reply?"));
    }

    #[test]
    fn anger_hands_off_at_once_and_frustration_when_it_recurs() {
        assert!(is_frustrated("This is useless", []));
        assert!(is_frustrated("WHY IS NOBODY ANSWERING ME!", []));
        assert!(!is_frustrated("That's not helpful", ["What is the price?"]));
        assert!(is_frustrated(
            "That's not helpful",
            ["you don't understand"]
        ));
        assert!(!is_frustrated("Thanks, that helps", ["this is confusing"]));
    }
}
