//! Text to sparse TF-IDF vectors for the offline intent classifier.
//!
//! Two blocks of features, each TF-IDF weighted with sublinear term frequency and L2-normalised
//! on its own, then weighted and concatenated: word n-grams (unigrams and bigrams by default)
//! catch phrasing, character n-grams inside word boundaries catch typos, inflections and
//! Hinglish spellings ("rate kya hai", "prise", "pricing"). Text is lowercased and accents are
//! folded first, so "Café" and "cafe" are one token.
//!
//! Features are identified by a 64-bit FNV-1a hash of the n-gram (collisions at this width are
//! negligible for a vocabulary of a few hundred thousand) so transforming a message allocates
//! no strings per n-gram.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use super::embedding::StaticEmbeddings;

/// What features to extract and how to weigh them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureConfig {
    /// Smallest and largest word n-gram (inclusive).
    pub word_ngrams: (usize, usize),
    /// Smallest and largest character n-gram (inclusive), taken inside padded words.
    pub char_ngrams: (usize, usize),
    /// A feature must occur in at least this many training texts to be kept.
    pub min_df: usize,
    /// Weight of the (unit-norm) word block.
    pub word_weight: f32,
    /// Weight of the (unit-norm) character block.
    pub char_weight: f32,
    /// Weight of the (unit-norm) block of static word-piece embeddings ([`super::embedding`]);
    /// 0 leaves it out.
    pub embedding_weight: f32,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            word_ngrams: (1, 2),
            char_ngrams: (2, 5),
            min_df: 1,
            word_weight: 1.0,
            char_weight: 1.0,
            embedding_weight: 2.0,
        }
    }
}

/// A sparse vector: (feature index, value) pairs, each index once.
pub type SparseVector = Vec<(u32, f32)>;

/// Lowercases, folds accents (NFKD without combining marks), drops apostrophes so "what's" and
/// "whats" agree, and turns every other non-alphanumeric character into a single space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        if matches!(c, '\'' | '’' | '‘' | '`') {
            continue;
        }
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

const WORD_TAG: u8 = b'w';
const CHAR_TAG: u8 = b'c';
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// Hashes of the word and character n-grams of a normalised text (with repeats).
fn ngram_hashes(
    config: &FeatureConfig,
    normalized: &str,
    words: &mut Vec<u64>,
    chars: &mut Vec<u64>,
) {
    let tokens: Vec<&str> = normalized.split(' ').filter(|t| !t.is_empty()).collect();
    let (wlo, whi) = config.word_ngrams;
    for n in wlo.max(1)..=whi {
        for gram in tokens.windows(n) {
            let mut h = fnv(FNV_OFFSET, &[WORD_TAG]);
            for (i, token) in gram.iter().enumerate() {
                if i > 0 {
                    h = fnv(h, b" ");
                }
                h = fnv(h, token.as_bytes());
            }
            words.push(h);
        }
    }
    let (clo, chi) = config.char_ngrams;
    if chi == 0 {
        return;
    }
    let mut padded: Vec<char> = Vec::new();
    let mut buf = [0u8; 4];
    for token in &tokens {
        padded.clear();
        padded.push(' ');
        padded.extend(token.chars());
        padded.push(' ');
        for n in clo.max(1)..=chi {
            if n > padded.len() {
                break;
            }
            for gram in padded.windows(n) {
                let mut h = fnv(FNV_OFFSET, &[CHAR_TAG]);
                for c in gram {
                    h = fnv(h, c.encode_utf8(&mut buf).as_bytes());
                }
                chars.push(h);
            }
        }
    }
}

/// Sorted (hash, count) pairs.
fn count(mut hashes: Vec<u64>) -> Vec<(u64, u32)> {
    hashes.sort_unstable();
    let mut out: Vec<(u64, u32)> = Vec::with_capacity(hashes.len());
    for h in hashes {
        match out.last_mut() {
            Some((last, n)) if *last == h => *n += 1,
            _ => out.push((h, 1)),
        }
    }
    out
}

/// Keys are already FNV hashes: hashing them again (SipHash) would only cost time.
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv(self.0 ^ FNV_OFFSET, bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashIndex<V> = HashMap<u64, V, BuildHasherDefault<PrehashedKey>>;

/// A fitted TF-IDF vectoriser: the vocabulary and inverse document frequencies of a corpus.
#[derive(Debug, Clone)]
pub struct Vectorizer {
    config: FeatureConfig,
    vocab: HashIndex<u32>,
    idf: Vec<f32>,
    /// The embedding block's table and per-piece IDF, when the block is on.
    embedding: Option<(&'static StaticEmbeddings, Vec<f32>)>,
}

/// Smoothed inverse document frequency, as scikit-learn's `TfidfVectorizer` computes it.
fn smoothed_idf(texts: f32, df: f32) -> f32 {
    ((1.0 + texts) / (1.0 + df)).ln() + 1.0
}

impl Vectorizer {
    /// Learns the vocabulary and smoothed IDF (`ln((1 + n) / (1 + df)) + 1`) of `texts`.
    pub fn fit<S: AsRef<str>>(config: FeatureConfig, texts: &[S]) -> Self {
        let mut df: HashIndex<u32> = HashIndex::default();
        let (mut words, mut chars) = (Vec::new(), Vec::new());
        for text in texts {
            words.clear();
            chars.clear();
            ngram_hashes(&config, &normalize(text.as_ref()), &mut words, &mut chars);
            for (h, _) in count(words.drain(..).chain(chars.drain(..)).collect()) {
                *df.entry(h).or_insert(0) += 1;
            }
        }
        let n = texts.len() as f32;
        let min_df = config.min_df.max(1) as u32;
        let mut kept: Vec<(u64, u32)> = df.into_iter().filter(|(_, d)| *d >= min_df).collect();
        kept.sort_unstable();
        let mut vocab = HashIndex::with_capacity_and_hasher(kept.len(), Default::default());
        let mut idf = Vec::with_capacity(kept.len());
        for (i, (h, d)) in kept.into_iter().enumerate() {
            vocab.insert(h, i as u32);
            idf.push(smoothed_idf(n, d as f32));
        }
        let embedding = (config.embedding_weight > 0.0).then(|| {
            let table = StaticEmbeddings::bundled();
            let mut df = vec![0u32; table.len()];
            let mut seen = Vec::new();
            for text in texts {
                seen.clear();
                seen.extend(table.tokenize(text.as_ref()));
                seen.sort_unstable();
                seen.dedup();
                for piece in &seen {
                    df[*piece as usize] += 1;
                }
            }
            let idf = df.iter().map(|d| smoothed_idf(n, *d as f32)).collect();
            (table, idf)
        });
        Self {
            config,
            vocab,
            idf,
            embedding,
        }
    }

    /// Number of features (the dimension of the vectors).
    pub fn dimension(&self) -> usize {
        self.idf.len() + self.embedding.as_ref().map_or(0, |(t, _)| t.dims())
    }

    /// The configuration this vectoriser was fitted with.
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// The TF-IDF vector of `text`; empty when no known n-gram occurs in it.
    pub fn transform(&self, text: &str) -> SparseVector {
        let (mut words, mut chars) = (Vec::new(), Vec::new());
        ngram_hashes(&self.config, &normalize(text), &mut words, &mut chars);
        let mut out = Vec::with_capacity(words.len() + chars.len());
        self.push_block(count(words), self.config.word_weight, &mut out);
        self.push_block(count(chars), self.config.char_weight, &mut out);
        // A text with no known n-gram stays empty (the classifier abstains on it): its word
        // pieces alone, punctuation or unknown, say nothing either.
        if !out.is_empty() {
            self.push_embedding(text, &mut out);
        }
        out
    }

    /// The IDF-weighted mean of the text's word-piece rows, unit-norm times its weight, as
    /// dense features after the TF-IDF ones.
    fn push_embedding(&self, text: &str, out: &mut SparseVector) {
        let Some((table, idf)) = &self.embedding else {
            return;
        };
        let mut sum = vec![0f32; table.dims()];
        for piece in table.tokenize(text) {
            table.accumulate(piece, idf[piece as usize], &mut sum);
        }
        let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm == 0.0 {
            return;
        }
        let scale = self.config.embedding_weight / norm;
        let base = self.idf.len() as u32;
        out.extend(
            sum.iter()
                .enumerate()
                .map(|(j, v)| (base + j as u32, v * scale)),
        );
    }

    fn push_block(&self, counts: Vec<(u64, u32)>, weight: f32, out: &mut SparseVector) {
        let start = out.len();
        for (h, c) in counts {
            if let Some(&i) = self.vocab.get(&h) {
                let tf = 1.0 + (c as f32).ln();
                out.push((i, tf * self.idf[i as usize]));
            }
        }
        let norm = out[start..].iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, v) in &mut out[start..] {
                *v *= weight / norm;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_lowercases_folds_accents_and_drops_punctuation() {
        assert_eq!(
            normalize("  Café, RÉSUMÉ!! what's up?? "),
            "cafe resume whats up"
        );
        assert_eq!(normalize("3BHK@Baner—Pune"), "3bhk baner pune");
        assert_eq!(normalize("?!"), "");
    }

    #[test]
    fn vectors_are_unit_norm_per_block_and_unknown_text_is_empty() {
        let corpus = ["what is the price", "book a site visit", "hello there"];
        let v = Vectorizer::fit(FeatureConfig::default(), &corpus);
        let x = v.transform("what is the price of a visit");
        let norm2: f32 = x.iter().map(|(_, v)| v * v).sum();
        // Two unit TF-IDF blocks and the embedding block of norm 2.
        assert!(
            (norm2 - 6.0).abs() < 1e-3,
            "blocks of norm 1, 1 and 2, got {norm2}"
        );
        assert!(v.transform("zzqx").is_empty());
        assert!(v.transform("").is_empty());
    }

    #[test]
    fn character_ngrams_make_a_typo_close_to_the_right_word() {
        let corpus = ["what is the price", "book a site visit"];
        let v = Vectorizer::fit(FeatureConfig::default(), &corpus);
        let dot = |a: &SparseVector, b: &SparseVector| -> f32 {
            let m: HashMap<u32, f32> = a.iter().copied().collect();
            b.iter().map(|(i, x)| m.get(i).unwrap_or(&0.0) * x).sum()
        };
        let typo = v.transform("prise");
        assert!(dot(&typo, &v.transform("price")) > dot(&typo, &v.transform("visit")));
    }

    #[test]
    fn min_df_drops_rare_features() {
        let corpus = ["alpha beta", "alpha gamma"];
        let all = Vectorizer::fit(FeatureConfig::default(), &corpus);
        let common = Vectorizer::fit(
            FeatureConfig {
                min_df: 2,
                ..FeatureConfig::default()
            },
            &corpus,
        );
        assert!(common.dimension() < all.dimension());
        assert!(!common.transform("alpha").is_empty());
        assert!(common.transform("xyz").is_empty());
    }
}
