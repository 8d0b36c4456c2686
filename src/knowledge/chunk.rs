//! Chunking: a parsed document becomes passages of about `target_tokens` tokens with
//! `overlap_tokens` of overlap, that follow the document's structure.
//!
//! Markdown is cut at its headings first (with `pulldown-cmark`), so a chunk never spans two
//! sections, and each chunk keeps its heading path (`Pricing > Payment plans`) as context. Inside a
//! section `text-splitter` splits on the largest boundary that fits (blocks, then paragraphs,
//! then sentences). Tokens are counted with `cl100k_base` (`tiktoken-rs`), the tokenizer of
//! OpenAI's `text-embedding-3` models, so a chunk fits the embedding model as configured.
//! Identical chunks of one document (same content hash) are kept once.

use std::collections::HashSet;

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use sha2::{Digest, Sha256};
use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tiktoken_rs::CoreBPE;

use super::parse::{ParsedDocument, Part};

/// How documents are cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSettings {
    /// The largest chunk, in `cl100k_base` tokens.
    pub target_tokens: usize,
    /// Tokens repeated between consecutive chunks of one section.
    pub overlap_tokens: usize,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        Self {
            target_tokens: 200,
            overlap_tokens: 30,
        }
    }
}

/// One passage, ready to be stored and indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The passage itself.
    pub text: String,
    /// The heading path, `Title > Section > Subsection`, when the document has headings.
    pub section: Option<String>,
    /// The 1-based page, for PDFs.
    pub page: Option<u32>,
    /// Order within the document, from 0.
    pub position: u32,
    /// SHA-256 (hex) of the section and text.
    pub content_hash: String,
    pub token_count: u32,
}

impl Chunk {
    /// What search engines see: the heading path gives a passage its context.
    pub fn indexed_text(&self) -> String {
        indexed_text(self.section.as_deref(), &self.text)
    }
}

/// The text that is embedded for a chunk with this section and body.
pub fn indexed_text(section: Option<&str>, text: &str) -> String {
    match section {
        Some(section) => format!("{section}\n{text}"),
        None => text.to_owned(),
    }
}

/// The tokenizer chunks are measured with (built once, on first use).
fn tokenizer() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Counts `cl100k_base` tokens.
#[derive(Debug, Clone, Copy)]
struct Tokens;

impl ChunkSizer for Tokens {
    fn size(&self, chunk: &str) -> usize {
        tokenizer().encode_ordinary(chunk).len()
    }
}

/// The number of `cl100k_base` tokens in `text`.
pub fn count_tokens(text: &str) -> usize {
    Tokens.size(text)
}

/// Cuts a parsed document into chunks.
pub fn chunk_document(document: &ParsedDocument, settings: ChunkSettings) -> Vec<Chunk> {
    let target = settings.target_tokens.max(8);
    let overlap = settings.overlap_tokens.min(target / 2);
    let config = || {
        ChunkConfig::new(target)
            .with_sizer(Tokens)
            .with_overlap(overlap)
            .expect("overlap is below capacity")
    };
    let markdown = MarkdownSplitter::new(config());
    let plain = TextSplitter::new(config());

    let mut out = ChunkCollector::default();
    for part in &document.parts {
        match part {
            Part::Markdown(text) => {
                for section in sections(text) {
                    for piece in markdown.chunks(section.body) {
                        out.push(piece, section.path.clone(), None);
                    }
                }
            }
            Part::Plain { text, page } => {
                for piece in plain.chunks(text) {
                    out.push(piece, None, *page);
                }
            }
            Part::Faq { question, answer } => {
                out.push(
                    &format!("{question}\n{answer}"),
                    Some(question.clone()),
                    None,
                );
            }
        }
    }
    out.chunks
}

#[derive(Default)]
struct ChunkCollector {
    chunks: Vec<Chunk>,
    seen: HashSet<String>,
}

impl ChunkCollector {
    fn push(&mut self, text: &str, section: Option<String>, page: Option<u32>) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let mut hasher = Sha256::new();
        hasher.update(section.as_deref().unwrap_or("").as_bytes());
        hasher.update([0u8]);
        hasher.update(text.as_bytes());
        let content_hash = hex::encode(hasher.finalize());
        if !self.seen.insert(content_hash.clone()) {
            return;
        }
        self.chunks.push(Chunk {
            text: text.to_owned(),
            section,
            page,
            position: self.chunks.len() as u32,
            content_hash,
            token_count: count_tokens(text) as u32,
        });
    }
}

/// A run of Markdown under one heading path.
struct Section<'a> {
    path: Option<String>,
    body: &'a str,
}

/// Splits Markdown at its headings. The heading line itself is not part of the body: it is in the
/// path.
fn sections(markdown: &str) -> Vec<Section<'_>> {
    // (level, title) of the headings above the current position
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    let mut body_start = 0;
    let mut heading: Option<(usize, usize, String)> = None; // (level, start, text so far)
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                out.push(Section {
                    path: path_of(&stack),
                    body: &markdown[body_start..range.start],
                });
                heading = Some((level_number(level), range.start, String::new()));
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, _, title)) = heading.as_mut() {
                    title.push_str(&text);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, _, title)) = heading.take() {
                    stack.retain(|(l, _)| *l < level);
                    stack.push((level, title.trim().to_owned()));
                }
                body_start = range.end;
            }
            _ => {}
        }
    }
    out.push(Section {
        path: path_of(&stack),
        body: &markdown[body_start..],
    });
    out.retain(|s| !s.body.trim().is_empty());
    out
}

fn path_of(stack: &[(usize, String)]) -> Option<String> {
    let titles: Vec<&str> = stack
        .iter()
        .map(|(_, t)| t.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    (!titles.is_empty()).then(|| titles.join(" > "))
}

fn level_number(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::parse::Format;

    fn markdown(text: &str) -> ParsedDocument {
        ParsedDocument {
            format: Format::Markdown,
            parts: vec![Part::Markdown(text.to_owned())],
        }
    }

    #[test]
    fn chunks_keep_their_heading_path() {
        let doc = markdown(
            "# Pricing\n\nIntro to prices.\n\n## Payment plans\n\nPay 10% now.\n\n### Late fees\n\nTwo percent.\n\n## Discounts\n\nEarly birds save.\n",
        );
        let chunks = chunk_document(&doc, ChunkSettings::default());
        let got: Vec<(Option<&str>, &str)> = chunks
            .iter()
            .map(|c| (c.section.as_deref(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("Pricing"), "Intro to prices."),
                (Some("Pricing > Payment plans"), "Pay 10% now."),
                (Some("Pricing > Payment plans > Late fees"), "Two percent."),
                (Some("Pricing > Discounts"), "Early birds save."),
            ]
        );
        assert_eq!(chunks[3].position, 3);
    }

    #[test]
    fn long_sections_are_split_near_the_target_with_overlap() {
        let paragraph = |p: usize| {
            (0..60)
                .map(|i| format!("p{p}w{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let text = format!(
            "# Big\n\n{}.\n\n{}.\n\n{}.\n",
            paragraph(1),
            paragraph(2),
            paragraph(3)
        );
        let settings = ChunkSettings {
            target_tokens: 50,
            overlap_tokens: 10,
        };
        let chunks = chunk_document(&markdown(&text), settings);
        assert!(chunks.len() >= 4, "{} chunks: {chunks:#?}", chunks.len());
        assert!(chunks.iter().all(|c| c.token_count <= 50));
        assert!(chunks.iter().all(|c| c.section.as_deref() == Some("Big")));
    }

    #[test]
    fn chunk_sizes_are_counted_in_model_tokens_not_words() {
        // cl100k_base: "An apple a" is three tokens; "unbelievably" is one word but three tokens.
        assert_eq!(count_tokens("An apple a"), 3);
        assert!(count_tokens("unbelievably") > 1);
        let words = (0..120)
            .map(|i| format!("unbelievably{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let settings = ChunkSettings {
            target_tokens: 64,
            overlap_tokens: 0,
        };
        let chunks = chunk_document(&markdown(&words), settings);
        // Counting words, 120 words would fit in two chunks of 64; in tokens they need many more.
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        for chunk in &chunks {
            assert_eq!(chunk.token_count as usize, count_tokens(&chunk.text));
            assert!(chunk.token_count <= 64, "{} tokens", chunk.token_count);
        }
    }

    #[test]
    fn identical_chunks_of_a_document_are_kept_once() {
        let doc = ParsedDocument {
            format: Format::Pdf,
            parts: vec![
                Part::Plain {
                    text: "Skyline Habitat, confidential".into(),
                    page: Some(1),
                },
                Part::Plain {
                    text: "Prices start at 1 crore.".into(),
                    page: Some(1),
                },
                Part::Plain {
                    text: "Skyline Habitat, confidential".into(),
                    page: Some(2),
                },
            ],
        };
        let chunks = chunk_document(&doc, ChunkSettings::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].page, Some(1));
    }

    #[test]
    fn each_faq_row_is_one_chunk_titled_by_its_question() {
        let doc = ParsedDocument {
            format: Format::Csv,
            parts: vec![Part::Faq {
                question: "Are pets allowed?".into(),
                answer: "Yes.".into(),
            }],
        };
        let chunks = chunk_document(&doc, ChunkSettings::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].section.as_deref(), Some("Are pets allowed?"));
        assert_eq!(chunks[0].text, "Are pets allowed?\nYes.");
    }
}
