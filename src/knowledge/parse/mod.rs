//! Turning an uploaded file into text parts the chunker understands: Markdown (with its
//! headings), plain text (paragraphs), pages of a PDF's text layer, or one question-and-answer
//! pair per CSV row. Each format lives in its own file and uses a well-kept crate; this module
//! picks the format from the file name and turns every failure into a reason a person can act on.

mod csv_faq;
mod docx;
mod html;
mod pdf;

/// The formats Parley reads, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Text,
    Html,
    Pdf,
    Docx,
    Csv,
}

impl Format {
    /// The format a file name's extension names, if Parley reads it.
    pub fn from_name(name: &str) -> Option<Self> {
        let ext = std::path::Path::new(name)
            .extension()?
            .to_str()?
            .to_ascii_lowercase();
        Some(match ext.as_str() {
            "md" | "markdown" => Format::Markdown,
            "txt" | "text" => Format::Text,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "csv" => Format::Csv,
            _ => return None,
        })
    }

    /// The media type recorded with the document.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Markdown => "text/markdown",
            Format::Text => "text/plain",
            Format::Html => "text/html",
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Csv => "text/csv",
        }
    }
}

/// One piece of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Markdown whose headings give the chunks their section.
    Markdown(String),
    /// Plain text, split on paragraphs; `page` for a PDF page (1-based).
    Plain { text: String, page: Option<u32> },
    /// A question and its answer: always one chunk.
    Faq { question: String, answer: String },
}

/// A parsed document: its format and its parts in reading order.
#[derive(Debug, Clone)]
pub struct ParsedDocument {
    pub format: Format,
    pub parts: Vec<Part>,
}

/// Why a file could not be read. The message is shown to the uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unsupported file type: use .md, .txt, .html, .pdf, .docx or .csv")]
    Unsupported,
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error("the file has no readable text")]
    NoText,
    #[error("{0}")]
    Malformed(String),
}

/// Parses `bytes` as the format `name`'s extension names.
pub fn parse(name: &str, bytes: &[u8], max_bytes: usize) -> Result<ParsedDocument, ParseError> {
    let format = Format::from_name(name).ok_or(ParseError::Unsupported)?;
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let parts = match format {
        Format::Markdown => vec![Part::Markdown(utf8(bytes)?.to_owned())],
        Format::Text => vec![Part::Plain {
            text: utf8(bytes)?.to_owned(),
            page: None,
        }],
        Format::Html => vec![Part::Markdown(html::to_markdown(utf8(bytes)?)?)],
        Format::Pdf => pdf::pages(bytes)?,
        Format::Docx => vec![Part::Markdown(docx::to_markdown(bytes)?)],
        Format::Csv => csv_faq::pairs(bytes)?,
    };
    let has_text = parts.iter().any(|part| match part {
        Part::Markdown(text) | Part::Plain { text, .. } => !text.trim().is_empty(),
        Part::Faq { .. } => true,
    });
    if !has_text {
        return Err(ParseError::NoText);
    }
    Ok(ParsedDocument { format, parts })
}

fn utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_extension_in_any_case() {
        assert_eq!(Format::from_name("Price List.PDF"), Some(Format::Pdf));
        assert_eq!(Format::from_name("faq.csv"), Some(Format::Csv));
        assert_eq!(Format::from_name("notes"), None);
        assert_eq!(Format::from_name("photo.png"), None);
    }

    #[test]
    fn empty_unsupported_and_oversized_files_have_clear_reasons() {
        assert_eq!(parse("a.md", b"", 10).unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse("a.exe", b"MZ", 10).unwrap_err(),
            ParseError::Unsupported
        );
        assert_eq!(
            parse("a.txt", b"hello world", 5).unwrap_err(),
            ParseError::TooLarge { size: 11, limit: 5 }
        );
        assert_eq!(
            parse("a.txt", b"\xff\xfe\x00", 10).unwrap_err(),
            ParseError::NotUtf8
        );
        assert_eq!(
            parse("a.txt", b"  \n ", 10).unwrap_err(),
            ParseError::NoText
        );
    }

    fn file(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/data/knowledge/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn markdown_of(name: &str) -> String {
        match &parse(name, &file(name), 1 << 20).unwrap().parts[..] {
            [Part::Markdown(text)] => text.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pdf_gives_its_text_layer_page_by_page() {
        let doc = parse("price-list.pdf", &file("price-list.pdf"), 1 << 20).unwrap();
        assert_eq!(doc.parts.len(), 2);
        let Part::Plain { text, page } = &doc.parts[1] else {
            panic!()
        };
        assert_eq!(*page, Some(2));
        assert!(
            text.contains("Covered parking costs 4 lakh rupees per slot."),
            "{text}"
        );
    }

    #[test]
    fn a_truncated_pdf_is_reported_as_damaged() {
        let err = parse("malformed.pdf", &file("malformed.pdf"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        let err = parse("fake.pdf", b"hello", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not a PDF"), "{err}");
    }

    #[test]
    fn a_docx_keeps_its_headings_paragraphs_and_tables() {
        let text = markdown_of("brochure.docx");
        assert!(text.contains("# Skyline Heights brochure"), "{text}");
        assert!(
            text.contains("## Location\n\nSkyline Heights is on Sarjapur Road"),
            "{text}"
        );
        assert!(text.contains("2 BHK | 1,050 sq ft"), "{text}");
        let err = parse("broken.docx", b"PK\x03\x04 not really a zip", 1 << 20).unwrap_err();
        assert!(
            err.to_string().starts_with("the DOCX could not be read"),
            "{err}"
        );
    }

    #[test]
    fn html_keeps_the_main_text_without_navigation_or_scripts() {
        let text = markdown_of("about.html");
        assert!(text.contains("About Skyline Habitat"), "{text}");
        assert!(text.contains("green building award"), "{text}");
        for noise in [
            "Menu link",
            "Header banner",
            "Footer copyright",
            "tracking",
            "console",
            "color",
        ] {
            assert!(!text.contains(noise), "`{noise}` in {text}");
        }
    }

    #[test]
    fn a_csv_faq_becomes_question_and_answer_pairs() {
        let doc = parse("faq.csv", &file("faq.csv"), 1 << 20).unwrap();
        assert_eq!(doc.parts.len(), 2);
        assert_eq!(
            doc.parts[0],
            Part::Faq {
                question: "Are pets allowed?".into(),
                answer: "Yes, pets are welcome in both projects.".into()
            }
        );
        let err = parse("q.csv", b"name,price\na,b\n", 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("question and answer columns"),
            "{err}"
        );
    }
}
