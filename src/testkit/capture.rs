//! Reads the HTTP request captures in `tests/fixtures/` (a request-bin status line, the request
//! headers, a blank line, the body) so tests can replay them byte for byte.

/// The capture's headers (name, value) and body. The leading `HTTP/1.1 200 OK` line of the
/// request bin is skipped.
pub fn split(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head_end, body_start) = match find(raw, b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match find(raw, b"\n\n") {
            Some(i) => (i, i + 2),
            None => (raw.len(), raw.len()),
        },
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let headers = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (headers, &raw[body_start..])
}

/// The value of header `name` (any case) in a capture's headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
