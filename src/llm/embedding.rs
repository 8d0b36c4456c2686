//! Static word-piece embeddings: the semantic half of the offline classifier's features.
//!
//! TF-IDF only knows the words of the training examples; "what does it cost" and "price list"
//! share none. The table in `models/wordpiece-static-384.bin` gives each of the 30,522 word
//! pieces of all-MiniLM-L6-v2 (Apache-2.0) a 384-dimensional vector, distilled by running each
//! piece through that sentence encoder alone (`tools/distill_static_embeddings.py`). A message's
//! vector is then an IDF-weighted mean of its pieces' rows, with no transformer at run time: a few
//! microseconds a message, and a 12 MB table compiled into the binary.
//!
//! Messages are cut into pieces exactly as the model's own tokenizer does (BERT, uncased): control
//! characters dropped, CJK ideographs split apart, accents stripped, lowercased, split on
//! whitespace and punctuation, then each word matched greedily against the longest known piece
//! (continuations prefixed `##`), `[UNK]` when a word cannot be spelled from pieces.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// The bundled table (format in `tools/distill_static_embeddings.py`).
static BUNDLED: &[u8] = include_bytes!("../../models/wordpiece-static-384.bin");

/// Words longer than this many characters are `[UNK]`, as in BERT.
const MAX_WORD_CHARS: usize = 100;

/// Word-piece vocabulary and its quantised embedding rows.
pub struct StaticEmbeddings {
    pieces: HashMap<String, u32>,
    dims: usize,
    /// Row `i` is `rows[i * dims..][..dims] * scales[i]`.
    scales: Vec<f32>,
    rows: Vec<i8>,
    unknown: u32,
}

impl std::fmt::Debug for StaticEmbeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbeddings")
            .field("pieces", &self.pieces.len())
            .field("dims", &self.dims)
            .finish()
    }
}

impl StaticEmbeddings {
    /// The table compiled into Parley, parsed once.
    pub fn bundled() -> &'static Self {
        static TABLE: OnceLock<StaticEmbeddings> = OnceLock::new();
        TABLE.get_or_init(|| Self::parse(BUNDLED).expect("the bundled embedding table is valid"))
    }

    /// Reads a table; the error names what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let slice = bytes
                .get(at..at + n)
                .ok_or_else(|| format!("the table ends early, at byte {at}"))?;
            at += n;
            Ok(slice)
        };
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if take(4)? != b"PWPE" {
            return Err("not a word-piece embedding table (bad magic)".into());
        }
        let version = u32_at(take(4)?);
        if version != 1 {
            return Err(format!("unsupported table version {version}"));
        }
        let count = u32_at(take(4)?) as usize;
        let dims = u32_at(take(4)?) as usize;
        let mut pieces = HashMap::with_capacity(count);
        for id in 0..count {
            let len = take(2)?;
            let len = u16::from_le_bytes([len[0], len[1]]) as usize;
            let piece =
                std::str::from_utf8(take(len)?).map_err(|_| format!("piece {id} is not UTF-8"))?;
            pieces.insert(piece.to_string(), id as u32);
        }
        let scales = take(count * 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rows = take(count * dims)?.iter().map(|b| *b as i8).collect();
        let unknown = *pieces.get("[UNK]").ok_or("the table has no [UNK] piece")?;
        Ok(Self {
            pieces,
            dims,
            scales,
            rows,
            unknown,
        })
    }

    /// Length of every row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of word pieces.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether the table is empty (never, for a parsed table).
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// `out += weight * row(piece)`.
    pub fn accumulate(&self, piece: u32, weight: f32, out: &mut [f32]) {
        let i = piece as usize;
        let scale = weight * self.scales[i];
        for (o, q) in out.iter_mut().zip(&self.rows[i * self.dims..][..self.dims]) {
            *o += scale * f32::from(*q);
        }
    }

    /// The word-piece ids of `text`, as the model's own (BERT uncased) tokenizer cuts it.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut word = String::new();
        let flush = |word: &mut String, ids: &mut Vec<u32>| {
            if !word.is_empty() {
                self.word_pieces(word, ids);
                word.clear();
            }
        };
        for c in basic_normalize(text).chars() {
            if c.is_whitespace() {
                flush(&mut word, &mut ids);
            } else if is_bert_punctuation(c) {
                flush(&mut word, &mut ids);
                word.push(c);
                flush(&mut word, &mut ids);
            } else {
                word.push(c);
            }
        }
        flush(&mut word, &mut ids);
        ids
    }

    /// Greedy longest-match-first word pieces of one word.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > MAX_WORD_CHARS {
            ids.push(self.unknown);
            return;
        }
        let before = ids.len();
        let mut start = 0usize;
        let mut candidate = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while end > start {
                let from = chars[start].0;
                let to = chars.get(end).map_or(word.len(), |(i, _)| *i);
                candidate.clear();
                if start > 0 {
                    candidate.push_str("##");
                }
                candidate.push_str(&word[from..to]);
                if let Some(&id) = self.pieces.get(candidate.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => ids.push(id),
                None => {
                    ids.truncate(before);
                    ids.push(self.unknown);
                    return;
                }
            }
            start = end;
        }
    }
}

/// BERT's normaliser: control characters dropped, whitespace (Unicode's) unified, CJK ideographs spaced
/// apart, accents stripped, lowercased.
fn basic_normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_bert_control(c) {
            continue;
        }
        if c.is_whitespace() {
            cleaned.push(' ');
        } else if is_cjk(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    cleaned
        .nfd()
        .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.general_category_group() == GeneralCategoryGroup::Other
}

/// ASCII symbols count as punctuation too ("$", "+", "^"), as in BERT.
fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces as text, to compare with the model tokenizer's output.
    fn pieces(text: &str) -> Vec<String> {
        let table = StaticEmbeddings::bundled();
        let mut names = vec![String::new(); table.len()];
        for (piece, id) in &table.pieces {
            names[*id as usize] = piece.clone();
        }
        table
            .tokenize(text)
            .into_iter()
            .map(|id| names[id as usize].clone())
            .collect()
    }

    #[test]
    fn the_bundled_table_has_the_models_vocabulary_and_width() {
        let table = StaticEmbeddings::bundled();
        assert_eq!(table.len(), 30_522);
        assert_eq!(table.dims(), 384);
        assert_eq!(table.pieces.get("[UNK]"), Some(&100));
        assert_eq!(table.pieces.get("[CLS]"), Some(&101));
    }

    #[test]
    fn words_split_into_the_longest_known_pieces() {
        assert_eq!(
            pieces("What's the PRICE?"),
            ["what", "'", "s", "the", "price", "?"]
        );
        assert_eq!(pieces("Café résumé"), ["cafe", "resume"]);
        assert_eq!(pieces("3BHK"), ["3", "##bh", "##k"]);
        assert_eq!(pieces("naïve 東京 tower"), ["naive", "東", "京", "tower"]);
        assert_eq!(
            pieces("e-mail me @ 5pm"),
            ["e", "-", "mail", "me", "@", "5", "##pm"]
        );
        assert_eq!(pieces("unaffordable"), ["una", "##ff", "##ord", "##able"]);
        assert_eq!(pieces("$20,000"), ["$", "20", ",", "000"]);
        assert_eq!(pieces("  \t\n "), Vec::<String>::new());
    }

    #[test]
    fn pieces_match_the_model_tokenizer_on_the_parity_fixture() {
        let fixture = include_str!("../../tests/fixtures/wordpiece_parity.jsonl");
        let table = StaticEmbeddings::bundled();
        let mut checked = 0;
        for line in fixture.lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = case["text"].as_str().unwrap();
            let expected: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(table.tokenize(text), expected, "{text:?}");
            checked += 1;
        }
        assert!(checked > 300, "{checked}");
    }

    #[test]
    fn a_word_that_cannot_be_spelled_is_one_unknown_piece() {
        assert_eq!(pieces("hello ☃☃☃"), ["hello", "[UNK]"]);
        assert_eq!(pieces(&"a".repeat(101)), ["[UNK]"]);
    }

    #[test]
    fn a_corrupt_table_is_refused_with_a_reason() {
        assert!(
            StaticEmbeddings::parse(b"nope")
                .unwrap_err()
                .contains("magic")
        );
        let truncated = &BUNDLED[..BUNDLED.len() - 1];
        assert!(
            StaticEmbeddings::parse(truncated)
                .unwrap_err()
                .contains("ends early")
        );
    }

    #[test]
    fn related_wordings_get_closer_vectors_than_unrelated_ones() {
        let table = StaticEmbeddings::bundled();
        let embed = |text: &str| {
            let mut v = vec![0f32; table.dims()];
            for id in table.tokenize(text) {
                table.accumulate(id, 1.0, &mut v);
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect::<Vec<_>>()
        };
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let cost = embed("how much does it cost");
        assert!(cos(&cost, &embed("what is the price")) > cos(&cost, &embed("book a site visit")));
    }
}
