//! CSV FAQs: a header row with `question` and `answer` columns (any case, any order, other
//! columns ignored); every row with both becomes one chunk.

use super::{ParseError, Part};

pub fn pairs(bytes: &[u8]) -> Result<Vec<Part>, ParseError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| ParseError::Malformed(format!("the CSV could not be read: {e}")))?
        .clone();
    let column = |wanted: &str| {
        headers.iter().position(|h| {
            h.trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(wanted)
        })
    };
    let (Some(question), Some(answer)) = (column("question"), column("answer")) else {
        return Err(ParseError::Malformed(
            "a CSV FAQ needs a header row with question and answer columns".into(),
        ));
    };
    let mut parts = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            ParseError::Malformed(format!(
                "the CSV could not be read at row {}: {e}",
                line + 2
            ))
        })?;
        let q = record.get(question).unwrap_or("").trim();
        let a = record.get(answer).unwrap_or("").trim();
        if !q.is_empty() && !a.is_empty() {
            parts.push(Part::Faq {
                question: q.to_owned(),
                answer: a.to_owned(),
            });
        }
    }
    Ok(parts)
}
