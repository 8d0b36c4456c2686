//! Offline fact extraction: rules and patterns over one message, in English and the Hinglish
//! that Indian prospects write ("budget 1.5 cr hai", "mera naam Asha hai", "9876543210 pe call
//! karo"). The LLM extractor (`llm_extract`) answers the same question with a structured-output
//! call; both are tested on the same examples (`tests::EXAMPLES`).

use std::sync::LazyLock;

use regex::Regex;

use super::facts::{LeadFacts, MessageSignals};
use super::{money, phone};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("an extraction pattern compiles")
}

/// "my name is Asha Rao", "mera naam Asha hai", "name: asha": any case is a name.
static NAME_STATED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i:\b(?:my name is|my name's|mera naam|mera nam|name\s*[:\-]|naam\s*[:\-]))\s+([\p{L}][\p{L}'.\-]*(?:\s+[\p{L}][\p{L}'.\-]*){0,2})",
    )
});
/// "I am Asha Rao", "this is Asha": only capitalised words, so "I am interested" is no name.
static NAME_INTRODUCED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i:\b(?:i am|i'm|im|this is|it's|main))\s+(\p{Lu}[\p{L}'.\-]*(?:\s+\p{Lu}[\p{L}'.\-]*){0,2})",
    )
});
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"));
static COMPANY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i:\b(?:i work (?:at|for|with)|working (?:at|for|with)|employed (?:at|with)|my company is|company(?: name)? is|company\s*[:\-]|kaam karta hoon|kaam karti hoon))\s+([\p{L}0-9][\w&.\-]*(?:\s+[\p{Lu}0-9&][\w&.\-]*){0,3})",
    )
});
static BHK: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b([1-6])(?:\.5)?\s*-?\s*bhk\b"));
static PROPERTY_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(villa|plot|penthouse|row ?house|bungalow|studio|duplex|office space|shop|commercial|land)s?\b",
    )
});
static TIMELINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(immediately|asap|right away|urgent(?:ly)?|turant|jaldi|this (?:month|week|year|quarter)|next (?:month|week|year|quarter)|agle (?:mahine|saal|hafte)|(?:in|within|after|next) \d{1,2} (?:days?|weeks?|months?|years?)|\d{1,2} (?:mahine|mahino|saal)(?: mein| me)?|by (?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|diwali|year end|end of (?:the )?year)|before diwali)\b",
    )
});
static LOCATION_STATED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i:\b(?:location is|location\s*[:\-]|i live in|i stay in|based in|looking in|looking at|prefer|preferably in))\s+(\p{Lu}[\p{L}]+(?:\s\p{Lu}[\p{L}]+)?)",
    )
});
/// Places the demo business (and most Indian real-estate buyers) name.
const PLACES: &[&str] = &[
    "Baner",
    "Wakad",
    "Hinjewadi",
    "Kharadi",
    "Aundh",
    "Balewadi",
    "Viman Nagar",
    "Koregaon Park",
    "Hadapsar",
    "Magarpatta",
    "Kothrud",
    "Pimple Saudagar",
    "Pune",
    "Mumbai",
    "Thane",
    "Navi Mumbai",
    "Delhi",
    "Gurgaon",
    "Gurugram",
    "Noida",
    "Bangalore",
    "Bengaluru",
    "Hyderabad",
    "Chennai",
    "Kolkata",
    "Ahmedabad",
    "Dubai",
];
static PLACE: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = PLACES.iter().map(|p| regex::escape(p)).collect();
    re(&format!(r"(?i)\b({})\b", alternatives.join("|")))
});
static KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(investment|invest|rental|rent|home loan|loan|emi|possession|ready to move|under construction|resale|amenities|parking|gym|swimming pool|clubhouse|vastu|rera|nri)\b",
    )
});
static PURCHASE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(want to buy|ready to buy|looking to buy|planning to buy|interested in buying|want to book|book (?:a|the|one|my)? ?(?:flat|unit|apartment|villa|plot|home)|booking amount|token amount|pay the token|finali[sz]e the deal|lena hai|kharidna hai|kharidna chahta|book karna)\b",
    )
});
static VISIT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(site visit|visit the site|schedule a visit|come and see|see the (?:flat|site|property|sample flat)|meeting|meet (?:you|your team)|call me|call karo|call kar do|visit karna|dekhne aana|aa sakte)\b",
    )
});
static PRICE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(price|prices|pricing|cost|rate|kitna|kitne ka|how much|quote|payment plan)\b")
});

const NOT_NAMES: &[&str] = &[
    "interested",
    "looking",
    "here",
    "from",
    "fine",
    "good",
    "ok",
    "okay",
    "searching",
    "planning",
    "and",
    "hai",
    "hoon",
    "hu",
    "the",
    "a",
    "not",
    "also",
    "just",
    "back",
];

/// What rules find in one message. `region` reads national phone numbers; `currency` is the
/// tenant's default for Indian units and bare budgets.
pub fn extract(text: &str, region: phonenumber::country::Id, currency: &str) -> MessageSignals {
    let mut facts = LeadFacts::default();
    if let Some(name) = name(text) {
        facts.set_name(&name);
    }
    facts.email = EMAIL
        .find_iter(text)
        .map(|m| m.as_str().trim_end_matches('.').to_ascii_lowercase())
        .find(|candidate| email_address::EmailAddress::is_valid(candidate));
    // Phone digits are looked for outside the email, so an address with digits is not a phone.
    let without_email = EMAIL.replace_all(text, " ");
    facts.phone = phone::find_in_text(&without_email, region).map(|p| p.e164);
    facts.company = COMPANY
        .captures(text)
        .map(|c| tidy(&c[1]))
        .filter(|c| !c.is_empty());
    facts.budget = money::parse_budget(&without_email, currency);
    facts.timeline = TIMELINE.find(text).map(|m| m.as_str().to_lowercase());
    facts.location = LOCATION_STATED
        .captures(text)
        .map(|c| c[1].to_owned())
        .or_else(|| PLACE.find(text).map(|m| canonical_place(m.as_str())));
    facts.property_type = BHK
        .captures(text)
        .map(|c| format!("{} BHK", &c[1]))
        .or_else(|| {
            PROPERTY_WORD
                .captures(text)
                .map(|c| c[1].to_lowercase().replace("rowhouse", "row house"))
        });
    for m in KEYWORD.find_iter(text) {
        let keyword = m.as_str().to_lowercase();
        if !facts.keywords.contains(&keyword) {
            facts.keywords.push(keyword);
        }
    }
    MessageSignals {
        facts,
        pricing_question: PRICE.is_match(text),
        visit_request: VISIT.is_match(text),
        purchase_inquiry: PURCHASE.is_match(text),
    }
}

fn name(text: &str) -> Option<String> {
    let caps = NAME_STATED
        .captures(text)
        .or_else(|| NAME_INTRODUCED.captures(text))?;
    let words: Vec<String> = caps[1]
        .split_whitespace()
        .take_while(|w| !NOT_NAMES.contains(&w.to_lowercase().as_str()))
        .map(capitalise)
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn capitalise(word: &str) -> String {
    let word = word.trim_matches(|c: char| c == '.' || c == ',');
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn canonical_place(found: &str) -> String {
    PLACES
        .iter()
        .find(|p| p.eq_ignore_ascii_case(found))
        .map(|p| (*p).to_owned())
        .unwrap_or_else(|| found.to_owned())
}

fn tidy(raw: &str) -> String {
    let raw = raw.split([',', ';', '!', '?']).next().unwrap_or("");
    let raw = raw.split(". ").next().unwrap_or("");
    raw.trim()
        .trim_end_matches(['.', ',', '!'])
        .split_whitespace()
        .take_while(|w| {
            !matches!(
                w.to_lowercase().as_str(),
                "and" | "in" | "as" | "hai" | "since"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::leads::facts::Budget;

    /// One example: a message and the facts it states. Shared with the LLM extractor's tests.
    pub struct Example {
        pub text: &'static str,
        pub expect: fn(&MessageSignals),
    }

    pub const EXAMPLES: &[Example] = &[
        Example {
            text: "Hi, my name is Asha Rao, email asha.rao@example.com",
            expect: |s| {
                assert_eq!(s.facts.first_name.as_deref(), Some("Asha"));
                assert_eq!(s.facts.last_name.as_deref(), Some("Rao"));
                assert_eq!(s.facts.email.as_deref(), Some("asha.rao@example.com"));
            },
        },
        Example {
            text: "mera naam rohit sharma hai, budget 1.5 cr hai",
            expect: |s| {
                assert_eq!(s.facts.full_name().as_deref(), Some("Rohit Sharma"));
                assert_eq!(
                    s.facts.budget,
                    Some(Budget {
                        amount: 15_000_000,
                        currency: "INR".into()
                    })
                );
            },
        },
        Example {
            text: "call me at 9876543210, I want a 3 BHK in Baner",
            expect: |s| {
                assert_eq!(s.facts.phone.as_deref(), Some("+919876543210"));
                assert_eq!(s.facts.property_type.as_deref(), Some("3 BHK"));
                assert_eq!(s.facts.location.as_deref(), Some("Baner"));
                assert!(s.visit_request);
            },
        },
        Example {
            text: "I work at Infosys. Looking for a villa, possession within 6 months, home loan needed",
            expect: |s| {
                assert_eq!(s.facts.company.as_deref(), Some("Infosys"));
                assert_eq!(s.facts.property_type.as_deref(), Some("villa"));
                assert_eq!(s.facts.timeline.as_deref(), Some("within 6 months"));
                assert!(s.facts.keywords.contains(&"home loan".to_owned()));
                assert!(s.facts.keywords.contains(&"possession".to_owned()));
            },
        },
        Example {
            text: "2 bhk wakad mein kitne ka hai? agle mahine tak lena hai",
            expect: |s| {
                assert_eq!(s.facts.property_type.as_deref(), Some("2 BHK"));
                assert_eq!(s.facts.location.as_deref(), Some("Wakad"));
                assert_eq!(s.facts.timeline.as_deref(), Some("agle mahine"));
                assert!(s.pricing_question);
                assert!(s.purchase_inquiry);
            },
        },
        Example {
            text: "Budget is $300k, I'm Priya from Dubai, can we schedule a site visit?",
            expect: |s| {
                assert_eq!(
                    s.facts.budget,
                    Some(Budget {
                        amount: 300_000,
                        currency: "USD".into()
                    })
                );
                assert_eq!(s.facts.first_name.as_deref(), Some("Priya"));
                assert_eq!(s.facts.location.as_deref(), Some("Dubai"));
                assert!(s.visit_request);
            },
        },
        Example {
            text: "I am interested in a plot, ₹1.5 crore max. Want to book a unit this month",
            expect: |s| {
                assert_eq!(s.facts.first_name, None);
                assert_eq!(s.facts.property_type.as_deref(), Some("plot"));
                assert_eq!(
                    s.facts.budget,
                    Some(Budget {
                        amount: 15_000_000,
                        currency: "INR".into()
                    })
                );
                assert_eq!(s.facts.timeline.as_deref(), Some("this month"));
                assert!(s.purchase_inquiry);
            },
        },
        Example {
            text: "mujhe 98765 43210 pe call karo, company: Tata Motors",
            expect: |s| {
                assert_eq!(s.facts.phone.as_deref(), Some("+919876543210"));
                assert_eq!(s.facts.company.as_deref(), Some("Tata Motors"));
                assert!(s.visit_request);
            },
        },
        Example {
            text: "ok thanks",
            expect: |s| {
                assert_eq!(s.facts, LeadFacts::default());
                assert!(!s.pricing_question && !s.visit_request && !s.purchase_inquiry);
            },
        },
    ];

    #[test]
    fn rules_find_every_fact_of_the_shared_examples() {
        for example in EXAMPLES {
            let signals = extract(example.text, phonenumber::country::Id::IN, "INR");
            let outcome = std::panic::catch_unwind(|| (example.expect)(&signals));
            assert!(
                outcome.is_ok(),
                "example {:?} gave {signals:#?}",
                example.text
            );
        }
    }

    #[test]
    fn an_email_with_digits_is_not_read_as_a_phone() {
        let s = extract(
            "write to ravi9876543210@example.com",
            phonenumber::country::Id::IN,
            "INR",
        );
        assert_eq!(s.facts.email.as_deref(), Some("ravi9876543210@example.com"));
        assert_eq!(s.facts.phone, None);
    }
}
