//! HTML: the page's main text as Markdown (so its headings become sections), without navigation,
//! headers, footers, scripts, styles or forms. `htmd` does the conversion.

use super::ParseError;

/// Elements whose content is never part of the main text.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "nav", "header", "footer", "aside", "form", "iframe", "svg",
    "template", "head", "button", "select",
];

pub fn to_markdown(html: &str) -> Result<String, ParseError> {
    let converter = htmd::HtmlToMarkdown::builder()
        .skip_tags(SKIPPED.to_vec())
        .build();
    converter
        .convert(html)
        .map_err(|e| ParseError::Malformed(format!("the HTML could not be read: {e}")))
}
