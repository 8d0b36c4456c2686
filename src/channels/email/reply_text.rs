//! The new part of an email: what the prospect wrote, without the quoted history their client
//! appended or their signature. Used when the provider sent no stripped text of its own (Mailgun
//! `stripped-text` and Postmark `StrippedTextReply` win when present). No maintained Rust crate
//! does this, so it follows the rules mail clients use: the text ends at the first quote header
//! (`On ... wrote:`, Outlook's `-----Original Message-----` or `From:` block) or at the first
//! run of `>` lines, and a signature starts at the `-- ` delimiter.

/// `body` without quoted history or signature, trimmed. Falls back to the whole body when
/// stripping would leave nothing (a message that is all quote is still a message).
pub fn strip_reply(body: &str) -> String {
    let body = body.replace("\r\n", "\n");
    let lines: Vec<&str> = body.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if is_signature_delimiter(line)
            || trimmed.starts_with('>')
            || is_quote_header(trimmed, lines.get(i + 1).map(|l| l.trim()))
        {
            end = i;
            break;
        }
    }
    let kept = lines[..end].join("\n").trim().to_owned();
    if kept.is_empty() {
        body.trim().to_owned()
    } else {
        kept
    }
}

fn is_signature_delimiter(line: &str) -> bool {
    let line = line.trim_end_matches('\r');
    line == "-- " || line == "--" || line == "__" || line.starts_with("Sent from my ")
}

/// `On Tue, 3 Jan 2023, Jane <j@x> wrote:` (possibly wrapped onto the next line), and the
/// header blocks Outlook and others put above a forwarded or quoted message.
fn is_quote_header(line: &str, next: Option<&str>) -> bool {
    let lower = line.to_lowercase();
    if lower.starts_with("-----original message-----")
        || lower.starts_with("________________________________")
    {
        return true;
    }
    if lower.starts_with("on ") {
        if lower.ends_with("wrote:") {
            return true;
        }
        if let Some(next) = next
            && next.to_lowercase().ends_with("wrote:")
        {
            return true;
        }
    }
    if lower.starts_with("from:")
        && let Some(next) = next
    {
        let next = next.to_lowercase();
        return next.starts_with("sent:") || next.starts_with("date:");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_lines_and_the_signature_are_removed() {
        let body = "bold text\n\n\n\nsome more bold text\n\n\n\nsome italic text\n\n> multiline\n> quoted\n> text\n\n\n--\nSignature block";
        assert_eq!(
            strip_reply(body),
            "bold text\n\n\n\nsome more bold text\n\n\n\nsome italic text"
        );
    }

    #[test]
    fn an_on_wrote_header_ends_the_reply_even_when_wrapped() {
        let body = "Yes, Tuesday works.\n\nOn Mon, 3 Jan 2023 at 10:00, Skyline Habitat <hello@skyline.example>\nwrote:\n> Would you like to visit?";
        assert_eq!(strip_reply(body), "Yes, Tuesday works.");
        let body = "Sounds good\r\n\r\nOn Mon, Jan 3, 2023 at 10:00 AM Sky <a@b> wrote:\r\n> hi";
        assert_eq!(strip_reply(body), "Sounds good");
    }

    #[test]
    fn outlook_headers_and_mobile_signatures_end_the_reply() {
        let body = "Please call me.\n\nFrom: Skyline <a@b>\nSent: Monday\nTo: me\n\nold text";
        assert_eq!(strip_reply(body), "Please call me.");
        let body = "Thanks!\n\nSent from my iPhone";
        assert_eq!(strip_reply(body), "Thanks!");
        let body = "Ok\n-----Original Message-----\nold";
        assert_eq!(strip_reply(body), "Ok");
    }

    #[test]
    fn a_message_that_is_all_quote_is_kept_whole() {
        assert_eq!(strip_reply("> only a quote"), "> only a quote");
        assert_eq!(
            strip_reply("Plain message\nwith two lines"),
            "Plain message\nwith two lines"
        );
    }
}
