//! DOCX: paragraphs and tables in document order (`docx-rs`), as Markdown: paragraphs styled
//! `Title` or `HeadingN` become headings so they give the chunks their sections; table rows become
//! lines of cells separated by `|`.

use docx_rs::{
    DocumentChild, Paragraph, ParagraphChild, RunChild, TableCellContent, TableChild, TableRowChild,
};

use super::ParseError;

pub fn to_markdown(bytes: &[u8]) -> Result<String, ParseError> {
    let docx = docx_rs::read_docx(bytes)
        .map_err(|e| ParseError::Malformed(format!("the DOCX could not be read: {e}")))?;
    let mut out = String::new();
    for child in &docx.document.children {
        match child {
            DocumentChild::Paragraph(paragraph) => {
                let text = paragraph_text(paragraph);
                if text.trim().is_empty() {
                    continue;
                }
                let level = heading_level(paragraph);
                if let Some(level) = level {
                    out.push_str(&"#".repeat(level));
                    out.push(' ');
                }
                out.push_str(text.trim());
                out.push_str("\n\n");
            }
            DocumentChild::Table(table) => {
                for row in &table.rows {
                    let TableChild::TableRow(row) = row;
                    let cells: Vec<String> = row
                        .cells
                        .iter()
                        .map(|cell| {
                            let TableRowChild::TableCell(cell) = cell;
                            cell.children
                                .iter()
                                .filter_map(|content| match content {
                                    TableCellContent::Paragraph(p) => Some(paragraph_text(p)),
                                    _ => None,
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                                .trim()
                                .to_owned()
                        })
                        .collect();
                    if cells.iter().any(|c| !c.is_empty()) {
                        out.push_str(&cells.join(" | "));
                        out.push('\n');
                    }
                }
                out.push('\n');
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `Title` is a level-1 heading, `HeadingN` level N (capped at 6).
fn heading_level(paragraph: &Paragraph) -> Option<usize> {
    let style = paragraph.property.style.as_ref()?.val.to_ascii_lowercase();
    if style == "title" {
        return Some(1);
    }
    let level: usize = style.strip_prefix("heading")?.trim().parse().ok()?;
    Some(level.clamp(1, 6))
}

fn paragraph_text(paragraph: &Paragraph) -> String {
    let mut text = String::new();
    for child in &paragraph.children {
        match child {
            ParagraphChild::Run(run) => run_text(run, &mut text),
            ParagraphChild::Hyperlink(link) => {
                for child in &link.children {
                    if let ParagraphChild::Run(run) = child {
                        run_text(run, &mut text);
                    }
                }
            }
            _ => {}
        }
    }
    text
}

fn run_text(run: &docx_rs::Run, out: &mut String) {
    for child in &run.children {
        match child {
            RunChild::Text(t) => out.push_str(&t.text),
            RunChild::Tab(_) => out.push('\t'),
            RunChild::Break(_) => out.push('\n'),
            _ => {}
        }
    }
}
