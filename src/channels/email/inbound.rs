//! One inbound email, whatever provider delivered it: who sent it, to which addresses, the
//! threading headers, the reply text (quoted history and signature removed) and attachment
//! metadata. Providers' parsers fill it; [`InboundEmail::from_mime`] reads a raw RFC 5322
//! message (SendGrid's raw mode, Mailgun's `body-mime`) with `mail-parser`.

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

use super::reply_text::strip_reply;

/// Attachment metadata; the content is never stored or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub size: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundEmail {
    /// The sender's address, lowercased.
    pub from: String,
    pub from_name: Option<String>,
    /// Every recipient address (To, Cc, the envelope), lowercased.
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// References, oldest first, without angle brackets.
    pub references: Vec<String>,
    /// The new text of this message: the provider's stripped reply when it sent one, otherwise
    /// the plain body with quoted history and signature removed.
    pub reply_text: String,
    /// When the sender's client says it was sent (Unix ms).
    pub sent_at_ms: Option<i64>,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailParseError {
    #[error("the `{0}` field is missing")]
    Missing(&'static str),
    #[error("the `{0}` field is not valid")]
    Invalid(&'static str),
}

impl InboundEmail {
    /// Reads a raw RFC 5322 message.
    pub fn from_mime(raw: &[u8]) -> Result<Self, EmailParseError> {
        let message = MessageParser::default()
            .parse(raw)
            .ok_or(EmailParseError::Invalid("email"))?;
        let from = message
            .from()
            .and_then(|a| a.first())
            .ok_or(EmailParseError::Missing("From"))?;
        let mut recipients = Vec::new();
        for list in [message.to(), message.cc()].into_iter().flatten() {
            recipients.extend(
                list.iter()
                    .filter_map(|a| a.address())
                    .map(str::to_lowercase),
            );
        }
        let body = message
            .body_text(0)
            .map(|b| b.into_owned())
            .unwrap_or_default();
        Ok(InboundEmail {
            from: from
                .address()
                .ok_or(EmailParseError::Missing("From"))?
                .to_lowercase(),
            from_name: from.name().map(str::to_owned),
            recipients,
            subject: message.subject().map(str::to_owned),
            message_id: message.message_id().map(str::to_owned),
            in_reply_to: message
                .in_reply_to()
                .as_text_list()
                .and_then(|l| l.first().map(|s| s.to_string()))
                .or_else(|| message.in_reply_to().as_text().map(str::to_owned)),
            references: message
                .references()
                .as_text_list()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .or_else(|| message.references().as_text().map(|s| vec![s.to_owned()]))
                .unwrap_or_default(),
            reply_text: strip_reply(&body),
            sent_at_ms: message.date().map(|d| d.to_timestamp() * 1000),
            attachments: message
                .attachments()
                .map(|part| Attachment {
                    name: part.attachment_name().map(str::to_owned),
                    content_type: part.content_type().map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{sub}", ct.ctype()),
                        None => ct.ctype().to_owned(),
                    }),
                    size: part.contents().len(),
                })
                .collect(),
        })
    }
}

/// Message ids as a header lists them (`<a@x> <b@y>`), without brackets.
pub fn message_ids(raw: &str) -> Vec<String> {
    raw.split(|c: char| c.is_whitespace() || c == ',')
        .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An address from `Name <a@b>` or `a@b`, lowercased.
pub fn bare_address(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let address = match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => &raw[open + 1..close],
        _ => raw,
    };
    let address = address.trim();
    address.contains('@').then(|| address.to_lowercase())
}

/// The display name from `Name <a@b>`, if any.
pub fn display_name(raw: &str) -> Option<String> {
    let name = raw.split('<').next()?.trim().trim_matches('"').trim();
    (raw.contains('<') && !name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eml(name: &str) -> InboundEmail {
        let raw = std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        InboundEmail::from_mime(&raw).unwrap()
    }

    #[test]
    fn the_rfc_5322_thread_parses_with_its_threading_headers() {
        let original = eml("email_rfc5322_A2_1_original.eml");
        assert_eq!(original.from, "jdoe@machine.example");
        assert_eq!(original.from_name.as_deref(), Some("John Doe"));
        assert_eq!(
            original.message_id.as_deref(),
            Some("1234@local.machine.example")
        );
        assert!(original.references.is_empty() && original.in_reply_to.is_none());
        assert!(
            original
                .reply_text
                .starts_with("This is a message just to say hello.")
        );
        assert_eq!(original.recipients, vec!["mary@example.net"]);

        let reply = eml("email_rfc5322_A2_2_reply.eml");
        assert_eq!(
            reply.in_reply_to.as_deref(),
            Some("1234@local.machine.example")
        );
        assert_eq!(reply.references, vec!["1234@local.machine.example"]);

        let second = eml("email_rfc5322_A2_3_reply_to_reply.eml");
        assert_eq!(second.in_reply_to.as_deref(), Some("3456@example.net"));
        assert_eq!(
            second.references,
            vec!["1234@local.machine.example", "3456@example.net"]
        );
        assert_eq!(second.reply_text, "This is a reply to your reply.");
        assert!(second.sent_at_ms.is_some());
    }

    #[test]
    fn addresses_and_id_lists_are_read_leniently() {
        assert_eq!(message_ids("<a@x>  <b@y>,<c@z>"), vec!["a@x", "b@y", "c@z"]);
        assert_eq!(
            bare_address("James McKinney <James@OpenNorth.ca>").as_deref(),
            Some("james@opennorth.ca")
        );
        assert_eq!(bare_address("no address"), None);
        assert_eq!(
            display_name("\"James McKinney\" <james@opennorth.ca>").as_deref(),
            Some("James McKinney")
        );
        assert_eq!(display_name("james@opennorth.ca"), None);
    }
}
