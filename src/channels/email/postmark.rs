//! Postmark inbound JSON: `FromFull`, `ToFull`, `CcFull`, `Subject`, `TextBody`,
//! `StrippedTextReply`, `MailboxHash`, `Headers[]` (the RFC Message-ID, In-Reply-To and
//! References are there) and `Attachments[]` (metadata kept, content dropped). Postmark signs
//! nothing: the route is protected by basic auth or a secret path segment.

use serde::Deserialize;

use super::inbound::{Attachment, EmailParseError, InboundEmail, message_ids};
use super::reply_text::strip_reply;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inbound {
    from: Option<String>,
    from_full: Option<Party>,
    #[serde(default)]
    to_full: Vec<Party>,
    #[serde(default)]
    cc_full: Vec<Party>,
    original_recipient: Option<String>,
    subject: Option<String>,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    text_body: Option<String>,
    stripped_text_reply: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    attachments: Vec<PostmarkAttachment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Party {
    email: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkAttachment {
    name: Option<String>,
    content_type: Option<String>,
    content_length: Option<usize>,
    content: Option<String>,
}

pub fn parse(raw: &[u8]) -> Result<InboundEmail, EmailParseError> {
    let inbound: Inbound =
        serde_json::from_slice(raw).map_err(|_| EmailParseError::Invalid("body"))?;
    let header = |name: &str| {
        inbound
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    };
    let (from, from_name) = match &inbound.from_full {
        Some(party) => (party.email.to_lowercase(), party.name.clone()),
        None => (
            inbound
                .from
                .as_deref()
                .and_then(super::inbound::bare_address)
                .ok_or(EmailParseError::Missing("FromFull"))?,
            None,
        ),
    };
    if !from.contains('@') {
        return Err(EmailParseError::Invalid("FromFull.Email"));
    }
    let mut recipients: Vec<String> = inbound
        .to_full
        .iter()
        .chain(&inbound.cc_full)
        .map(|p| p.email.to_lowercase())
        .collect();
    recipients.extend(inbound.original_recipient.as_deref().map(str::to_lowercase));
    recipients.dedup();
    let reply_text = match inbound
        .stripped_text_reply
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        Some(stripped) => stripped.trim().to_owned(),
        None => strip_reply(inbound.text_body.as_deref().unwrap_or_default()),
    };
    Ok(InboundEmail {
        from,
        from_name: from_name.filter(|n| !n.is_empty()),
        recipients,
        subject: inbound.subject.clone(),
        message_id: header("Message-ID")
            .and_then(|v| message_ids(v).into_iter().next())
            .or(inbound.message_id.clone()),
        in_reply_to: header("In-Reply-To").and_then(|v| message_ids(v).into_iter().next()),
        references: header("References").map(message_ids).unwrap_or_default(),
        reply_text,
        sent_at_ms: None,
        attachments: inbound
            .attachments
            .iter()
            .map(|a| Attachment {
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                size: a
                    .content_length
                    .unwrap_or_else(|| a.content.as_ref().map(|c| c.len() * 3 / 4).unwrap_or(0)),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn the_modern_inbound_json_uses_the_stripped_reply_and_the_rfc_message_id() {
        let email = parse(&fixture("postmark_inbound_mvdnbrk.json")).unwrap();
        assert_eq!(email.from, "john@example.com");
        assert_eq!(email.from_name.as_deref(), Some("John Doe"));
        assert_eq!(
            email.message_id.as_deref(),
            Some("test-message-id@mail.example.com")
        );
        assert_eq!(
            email.reply_text,
            "Okay, thank you for testing this inbound message!"
        );
        assert!(
            email
                .recipients
                .contains(&"jane+ahoy@inbound.postmarkapp.com".to_owned())
        );
        assert_eq!(email.attachments.len(), 2);
        assert_eq!(email.attachments[0].name.as_deref(), Some("myimage.png"));
        assert_eq!(email.attachments[0].size, 4096);
        assert_eq!(
            email.attachments[1].content_type.as_deref(),
            Some("plain/text")
        );
    }

    #[test]
    fn the_older_capture_strips_quote_and_signature_itself() {
        let raw = fixture("postmark_inbound_http_multimail.txt");
        let body = crate::testkit::capture::split(&raw).1;
        let email = parse(body).unwrap();
        assert_eq!(email.from, "james@opennorth.ca");
        assert_eq!(
            email.message_id.as_deref(),
            Some("26ECCA85-47DE-4E66-827A-B35E34874F26@opennorth.ca")
        );
        assert!(
            email.reply_text.ends_with("some italic text"),
            "{}",
            email.reply_text
        );
        assert!(!email.reply_text.contains("quoted"));
    }

    #[test]
    fn junk_is_refused() {
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }
}
