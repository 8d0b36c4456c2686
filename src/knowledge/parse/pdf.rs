//! PDF: the text layer, page by page (`pdf-extract`). A scanned PDF without a text layer is
//! reported as having no text; a damaged file as not readable. `pdf-extract` can panic on
//! malformed input, so the call is isolated and a panic becomes an error for that file only.

use super::{ParseError, Part};

pub fn pages(bytes: &[u8]) -> Result<Vec<Part>, ParseError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ParseError::Malformed(
            "the file is not a PDF (it does not start with %PDF-)".into(),
        ));
    }
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes));
    let pages = match extracted {
        Ok(Ok(pages)) => pages,
        Ok(Err(e)) => {
            return Err(ParseError::Malformed(format!(
                "the PDF is damaged and could not be read: {e}"
            )));
        }
        Err(_) => {
            return Err(ParseError::Malformed(
                "the PDF is damaged and could not be read".into(),
            ));
        }
    };
    Ok(pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| Part::Plain {
            text,
            page: Some(i as u32 + 1),
        })
        .collect())
}
