//! The offline brain: a useful answer without a model. From the passages retrieval found, it keeps
//! the sentences that answer the question (ranked by how many of the question's content words they
//! share, weighted by rarity across the passages, with a bonus for figures when the question asks
//! about money or dates), in their original order, and cites the passages they came from. How much
//! of the question the answer covers is one of the confidence factors.
//!
//! Coverage is weighted the same way: a word found in every passage (the project's name) says
//! little, and a word found in none of them (the "school" of "school fees near Skyline Meadows")
//! weighs the most, because the passages say nothing about it. Words are compared by their
//! Snowball stems ("located" meets "location"). Questions inside passages (an FAQ's question)
//! are never answers: they are context for the sentences that follow them.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use qdrant_rust_stemmers::{Algorithm, Stemmer};

use crate::consent::normalise;

/// A retrieved passage, as the agents see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The chunk id, cited by answers.
    pub id: String,
    pub text: String,
    pub score: f32,
    pub document: String,
    pub section: Option<String>,
}

/// An extractive answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// The passages the sentences came from, in citation order.
    pub cited: Vec<String>,
    /// The share (0 to 1) of the question's content words the answer covers.
    pub coverage: f32,
}

const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "what",
    "whats",
    "which",
    "who",
    "whom",
    "how",
    "when",
    "where",
    "why",
    "can",
    "could",
    "would",
    "should",
    "will",
    "shall",
    "may",
    "might",
    "i",
    "me",
    "my",
    "we",
    "our",
    "you",
    "your",
    "it",
    "its",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "of",
    "in",
    "on",
    "at",
    "to",
    "for",
    "from",
    "by",
    "with",
    "about",
    "and",
    "or",
    "but",
    "if",
    "so",
    "any",
    "some",
    "please",
    "tell",
    "know",
    "want",
    "like",
    "need",
    "get",
    "have",
    "has",
    "had",
    "much",
    "many",
    "there",
    "hi",
    "hello",
    "also",
    "just",
    "up",
    "out",
    "as",
    "into",
    "than",
    "then",
    "them",
    "they",
    "us",
    "flat",
    "apartment",
    "home",
    "unit",
    "house",
    "property",
    "place",
    "one",
];

const MONEY_WORDS: &[&str] = &[
    "price", "cost", "rate", "budget", "much", "charges", "fee", "emi", "payment", "booking",
    "amount",
];
const TIME_WORDS: &[&str] = &[
    "when",
    "possession",
    "date",
    "ready",
    "handover",
    "completion",
    "timeline",
];

/// The content words of a text, lightly stemmed (plural `s` dropped).
pub fn content_words(text: &str) -> Vec<String> {
    // "2 BHK" is one thing: joined, so the 2 never matches the 2 of "₹2.05 Cr".
    let normalised = normalise(text);
    let raw: Vec<&str> = normalised.split(' ').collect();
    let mut joined: Vec<String> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let unit = raw.get(i + 1).copied();
        let is_rooms = matches!(
            unit,
            Some("bhk" | "bedroom" | "bedrooms" | "bed" | "beds" | "br")
        );
        if !raw[i].is_empty() && raw[i].chars().all(|c| c.is_ascii_digit()) && is_rooms {
            joined.push(format!("{}bhk", raw[i]));
            i += 2;
        } else {
            joined.push(raw[i].to_owned());
            i += 1;
        }
    }
    joined
        .iter()
        .map(String::as_str)
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
        .map(stem)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// A word's Snowball (English) stem; figures and joined units ("3bhk") are kept as they are.
fn stem(word: &str) -> String {
    if word.chars().any(|c| c.is_ascii_digit()) {
        word.to_owned()
    } else {
        STEMMER.stem(word).into_owned()
    }
}

/// The stems of [`MONEY_WORDS`] and [`TIME_WORDS`], worked out once.
static MONEY_STEMS: LazyLock<Vec<String>> =
    LazyLock::new(|| MONEY_WORDS.iter().map(|w| stem(w)).collect());
static TIME_STEMS: LazyLock<Vec<String>> =
    LazyLock::new(|| TIME_WORDS.iter().map(|w| stem(w)).collect());

/// Whether a content word (a stem) is one of `stems`.
fn is_one_of(word: &str, stems: &[String]) -> bool {
    stems.iter().any(|s| s == word)
}

/// Markdown wraps long lines: a line that does not start a list item, heading, table row or
/// paragraph continues the previous one.
fn unwrap_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let starts_block = trimmed.is_empty()
            || trimmed.starts_with(['-', '*', '#', '|', '+'])
            || trimmed
                .split_once('.')
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !out.is_empty() {
            out.push(if starts_block { '\n' } else { ' ' });
        }
        out.push_str(trimmed);
    }
    out.replace("**", "").replace("__", "")
}

/// The cells of a Markdown table line (`| a | b |`), or `None` for any other line.
fn table_cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?;
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    Some(inner.split('|').map(str::trim).collect())
}

/// Whether table cells are a header's separator (`|---|:--:|`).
fn is_separator(cells: &[&str]) -> bool {
    cells
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')))
}

/// Markdown table rows as sentences a prospect can read: under a header `| Home | Carpet area |
/// Starting price |`, the row `| 2 BHK | 742 sq ft | ₹1.12 Cr |` reads "2 BHK: carpet area 742
/// sq ft, starting price ₹1.12 Cr." (a row without a header in view: its cells joined by
/// commas). Header lines stay as they are (they name what the rows hold, context for the
/// search); separators go; other lines are untouched. Read line by line rather than through
/// pulldown-cmark: a chunk can start mid-table, without the header and separator a Markdown
/// parser needs before it sees a table at all.
fn render_tables(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut header: Option<Vec<String>> = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(cells) = table_cells(line) else {
            header = None;
            out.push((*line).to_owned());
            continue;
        };
        if is_separator(&cells) {
            continue;
        }
        let next_is_separator = lines
            .get(i + 1)
            .and_then(|next| table_cells(next))
            .is_some_and(|next| is_separator(&next));
        if next_is_separator {
            header = Some(cells.iter().map(|c| c.to_lowercase()).collect());
            out.push((*line).to_owned());
            continue;
        }
        let subject = cells.first().copied().unwrap_or_default();
        let described: Vec<String> = cells
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, value)| !value.is_empty())
            .map(
                |(column, value)| match header.as_ref().and_then(|h| h.get(column)) {
                    Some(name) if !name.is_empty() => format!("{name} {value}"),
                    _ => (*value).to_owned(),
                },
            )
            .collect();
        let sentence = match (subject.is_empty(), described.is_empty()) {
            (true, true) => continue,
            (true, false) => described.join(", "),
            (false, true) => subject.to_owned(),
            (false, false) => format!("{subject}: {}", described.join(", ")),
        };
        // As a list item, so that each row stays a line of its own.
        out.push(format!("- {}.", sentence.trim_end_matches('.')));
    }
    out.join("\n")
}

fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let text = unwrap_lines(&render_tables(text));
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        current.push(*c);
        let next_is_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        let boundary = (matches!(c, '.' | '!' | '?') && next_is_space) || *c == '\n';
        if boundary {
            let s = current
                .trim()
                .trim_start_matches(['-', '*', '#', '|', ' '])
                .trim();
            if s.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
                out.push(s.to_owned());
            }
            current.clear();
        }
    }
    let s = current
        .trim()
        .trim_start_matches(['-', '*', '#', '|', ' '])
        .trim();
    if s.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
        out.push(s.to_owned());
    }
    out
}

/// Whether a sentence states an amount of money.
fn has_amount(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    sentence.contains('₹')
        || sentence.contains('$')
        || [" cr", "crore", "lakh", " rs", "inr", "per sq"]
            .iter()
            .any(|m| lower.contains(m))
}

/// Whether a sentence states a date (a year or a month).
fn has_date(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    lower
        .split(|c: char| !c.is_ascii_digit())
        .any(|d| d.len() == 4 && (d.starts_with("19") || d.starts_with("20")))
        || [
            "january",
            "february",
            "march",
            "april",
            "may ",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
        .iter()
        .any(|m| lower.contains(m))
}

/// A passage cut into sentences with their content words: the same for every question, so it is
/// worked out once per passage and kept (popular passages are retrieved again and again).
#[derive(Debug)]
struct PassageAnalysis {
    /// What was analysed, compared on every hit so that a hash collision is only a miss.
    source: (Option<String>, String, String),
    /// The content words of the section heading and the document name.
    context: BTreeSet<String>,
    sentences: Vec<AnalysedSentence>,
}

#[derive(Debug)]
struct AnalysedSentence {
    text: String,
    words: BTreeSet<String>,
    /// A question or a table's header row: context for what follows, never an answer.
    is_context: bool,
    has_amount: bool,
    has_date: bool,
}

/// A sentence that may answer: where it is (the passage's rank, its position there) and which
/// context it is read in.
struct Candidate<'a> {
    rank: usize,
    position: usize,
    sentence: &'a AnalysedSentence,
    context: usize,
}

/// Passages analysed recently, by a hash of their section, document and text.
static ANALYSES: LazyLock<moka::sync::Cache<u64, Arc<PassageAnalysis>>> =
    LazyLock::new(|| moka::sync::Cache::new(4_096));

fn analyse(passage: &Evidence) -> Arc<PassageAnalysis> {
    let mut hasher = std::hash::DefaultHasher::new();
    (&passage.section, &passage.document, &passage.text).hash(&mut hasher);
    let key = hasher.finish();
    if let Some(found) = ANALYSES.get(&key)
        && found.source.0 == passage.section
        && found.source.1 == passage.document
        && found.source.2 == passage.text
    {
        return found;
    }
    let context: BTreeSet<String> = passage
        .section
        .as_deref()
        .map(content_words)
        .unwrap_or_default()
        .into_iter()
        .chain(content_words(&passage.document))
        .collect();
    let sentences = split_sentences(&passage.text)
        .into_iter()
        .map(|text| {
            // A table's header row names what its rows hold: context too.
            let table_header = text.contains('|') && !text.chars().any(|c| c.is_ascii_digit());
            AnalysedSentence {
                words: content_words(&text).into_iter().collect(),
                is_context: text.ends_with('?') || table_header,
                has_amount: has_amount(&text),
                has_date: has_date(&text),
                text,
            }
        })
        .collect();
    let analysis = Arc::new(PassageAnalysis {
        source: (
            passage.section.clone(),
            passage.document.clone(),
            passage.text.clone(),
        ),
        context,
        sentences,
    });
    ANALYSES.insert(key, analysis.clone());
    analysis
}

/// The best `max_sentences` sentences of the passages for `question`, or `None` when no sentence
/// shares a content word with it.
pub fn extract_answer(
    question: &str,
    passages: &[Evidence],
    max_sentences: usize,
) -> Option<Answer> {
    let question_words: BTreeSet<String> = content_words(question).into_iter().collect();
    if question_words.is_empty() || passages.is_empty() {
        return None;
    }
    let wants_money = question_words.iter().any(|w| is_one_of(w, &MONEY_STEMS));
    let wants_time = question_words.iter().any(|w| is_one_of(w, &TIME_STEMS));
    // Candidate sentences with their passage and position; the passage's section heading counts
    // as context for its sentences. Sentences share their context: `contexts` holds each one
    // once, and a candidate names it by index.
    let analyses: Vec<Arc<PassageAnalysis>> = passages.iter().map(analyse).collect();
    let mut contexts: Vec<BTreeSet<String>> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for (rank, analysis) in analyses.iter().enumerate() {
        contexts.push(analysis.context.clone());
        for (position, sentence) in analysis.sentences.iter().enumerate() {
            if sentence.is_context {
                // A question in a passage (an FAQ's) is what the next sentences answer.
                let mut context = contexts.last().cloned().unwrap_or_default();
                context.extend(sentence.words.iter().cloned());
                contexts.push(context);
                continue;
            }
            candidates.push(Candidate {
                rank,
                position,
                sentence,
                context: contexts.len() - 1,
            });
        }
    }
    // Rarer words weigh more: a word found in every sentence says little.
    let mut frequency: HashMap<&str, usize> = HashMap::new();
    for candidate in &candidates {
        for w in candidate.sentence.words.union(&contexts[candidate.context]) {
            *frequency.entry(w.as_str()).or_default() += 1;
        }
    }
    let total = candidates.len().max(1) as f32;
    let weight = |w: &str| -> f32 {
        let f = frequency.get(w).copied().unwrap_or(0) as f32;
        (1.0 + total / (1.0 + f)).ln()
    };
    let mut scored: Vec<(f32, &Candidate)> = candidates
        .iter()
        .filter_map(|candidate| {
            let analysed = candidate.sentence;
            let words = &analysed.words;
            let context = &contexts[candidate.context];
            let mut shared = question_words
                .iter()
                .filter(|q| words.contains(*q))
                .peekable();
            shared.peek()?;
            let mut score: f32 = shared.map(|w| weight(w)).sum();
            score += 0.5
                * question_words
                    .iter()
                    .filter(|q| context.contains(*q) && !words.contains(*q))
                    .count() as f32;
            // A price question is answered by an amount, a "when" question by a date: a
            // sentence without one answers something else, however many words it shares.
            let has_figure =
                (wants_money && analysed.has_amount) || (wants_time && analysed.has_date);
            if has_figure {
                score += 1.5;
            } else if wants_money || wants_time {
                score *= 0.5;
            }
            score -= 0.1 * candidate.rank as f32;
            Some((score, candidate))
        })
        .collect();
    if scored.is_empty() {
        return None;
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut chosen: Vec<&Candidate> = Vec::new();
    for (_, candidate) in scored {
        if chosen.len() == max_sentences {
            break;
        }
        if chosen
            .iter()
            .any(|c| c.sentence.text == candidate.sentence.text)
        {
            continue;
        }
        chosen.push(candidate);
    }
    chosen.sort_by_key(|c| (c.rank, c.position));
    // Each question word weighs by its rarity in the passages: one they never mention weighs
    // the most. The coverage is the best single sentence's (with its passage's context): two
    // sentences that each match half of the question do not make an answer to it. A figure
    // answers the question's money or time word.
    let covered_weight = |c: &Candidate| -> f32 {
        let analysed = c.sentence;
        let context = &contexts[c.context];
        let answered_by_figure = |q: &str| {
            (is_one_of(q, &MONEY_STEMS) && analysed.has_amount)
                || (is_one_of(q, &TIME_STEMS) && analysed.has_date)
        };
        question_words
            .iter()
            .filter(|q| {
                analysed.words.contains(*q) || context.contains(*q) || answered_by_figure(q)
            })
            .map(|w| weight(w))
            .sum()
    };
    let total_weight: f32 = question_words.iter().map(|w| weight(w)).sum();
    let coverage = chosen
        .iter()
        .map(|c| covered_weight(c))
        .fold(0.0f32, f32::max)
        / total_weight.max(f32::MIN_POSITIVE);
    let mut cited = Vec::new();
    for candidate in &chosen {
        let id = &passages[candidate.rank].id;
        if !cited.contains(id) {
            cited.push(id.clone());
        }
    }
    let text = chosen
        .iter()
        .map(|c| c.sentence.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    Some(Answer {
        text,
        cited,
        coverage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(id: &str, text: &str, section: &str) -> Evidence {
        Evidence {
            id: id.to_owned(),
            text: text.to_owned(),
            score: 1.0,
            document: "Skyline Meadows price list".to_owned(),
            section: Some(section.to_owned()),
        }
    }

    #[test]
    fn the_sentence_that_answers_is_chosen_and_cited() {
        let passages = [
            passage(
                "c1",
                "Skyline Meadows is in Baner, Pune. A 2 BHK starts at ₹1.12 Cr and a 3 BHK at ₹1.58 Cr. The clubhouse has a pool.",
                "Skyline Meadows > Prices",
            ),
            Evidence {
                document: "Skyline Heights brochure".to_owned(),
                ..passage(
                    "c2",
                    "Skyline Heights in Whitefield has 3 and 4 BHK homes.",
                    "Skyline Heights",
                )
            },
        ];
        let answer = extract_answer(
            "What is the price of a 3 BHK at Skyline Meadows?",
            &passages,
            1,
        )
        .unwrap();
        assert_eq!(
            answer.text,
            "A 2 BHK starts at ₹1.12 Cr and a 3 BHK at ₹1.58 Cr."
        );
        assert_eq!(answer.cited, ["c1"]);
        assert!(answer.coverage >= 0.75, "{answer:?}");
    }

    #[test]
    fn an_unrelated_question_covers_little() {
        let passages = [passage("c1", "A 2 BHK starts at ₹1.12 Cr.", "Prices")];
        let answer = extract_answer("Do you allow pets in the swimming pool?", &passages, 2);
        assert!(answer.is_none_or(|a| a.coverage < 0.5));
        assert!(extract_answer("hello", &[], 2).is_none());
    }

    #[test]
    fn table_rows_read_as_sentences_named_by_their_header() {
        let text = "Starting prices:\n\n| Home | Carpet area | Starting price |\n|---|:---:|---|\n\
                    | 2 BHK | 742 sq ft | ₹1.12 Cr |\n| 3 BHK | | ₹1.58 Cr |\n\nFloor rise is extra.";
        assert_eq!(
            split_sentences(text),
            [
                "Starting prices:",
                "Home | Carpet area | Starting price |",
                "2 BHK: carpet area 742 sq ft, starting price ₹1.12 Cr.",
                "3 BHK: starting price ₹1.58 Cr.",
                "Floor rise is extra.",
            ]
        );
        // Rows cut from their header (a chunk that starts mid-table) keep their cells.
        assert_eq!(
            split_sentences("| 4 BHK | 2,050 sq ft | ₹2.95 Cr |"),
            ["4 BHK: 2,050 sq ft, ₹2.95 Cr."]
        );
        let passages = [passage(
            "c1",
            "| Home | Carpet area | Starting price |\n|---|---|---|\n| 2 BHK | 742 sq ft | ₹1.12 Cr |\n| 3 BHK | 1,085 sq ft | ₹1.58 Cr |",
            "Skyline Meadows",
        )];
        let answer = extract_answer("What is the price of a 3 BHK?", &passages, 1).unwrap();
        assert_eq!(
            answer.text,
            "3 BHK: carpet area 1,085 sq ft, starting price ₹1.58 Cr."
        );
    }

    #[test]
    fn content_words_drop_stopwords_and_plurals() {
        assert_eq!(content_words("What are the amenities?"), ["amen"]);
        assert_eq!(
            content_words("Where is it located?"),
            content_words("location")
        );
        assert_eq!(
            content_words("How much do 3 BHK flats cost"),
            ["3bhk", "cost"]
        );
    }
}
