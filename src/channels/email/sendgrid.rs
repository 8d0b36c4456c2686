//! SendGrid Inbound Parse: multipart fields `headers` (the raw header block), `from`, `to`,
//! `subject`, `text`, `html`, `envelope` and attachment files; or, in raw mode, the whole
//! message in `email`. SendGrid signs nothing: the route is protected by a secret path segment or
//! basic auth (see the HTTP layer).

use mail_parser::MessageParser;

use super::form::FormFields;
use super::inbound::{EmailParseError, InboundEmail, bare_address, display_name, message_ids};
use super::reply_text::strip_reply;

pub fn parse(form: &FormFields) -> Result<InboundEmail, EmailParseError> {
    if let Some(raw) = form.get("email").filter(|r| !r.trim().is_empty()) {
        let mut email = InboundEmail::from_mime(raw.as_bytes())?;
        email.attachments.extend(form.files.iter().cloned());
        return Ok(email);
    }
    let from_raw = form
        .first(&["from"])
        .ok_or(EmailParseError::Missing("from"))?;
    let from = bare_address(from_raw).ok_or(EmailParseError::Invalid("from"))?;
    let mut recipients: Vec<String> = form
        .get("to")
        .map(|to| to.split(',').filter_map(bare_address).collect())
        .unwrap_or_default();
    if let Some(envelope) = form.get("envelope") {
        #[derive(serde::Deserialize)]
        struct Envelope {
            #[serde(default)]
            to: Vec<String>,
        }
        if let Ok(envelope) = serde_json::from_str::<Envelope>(envelope) {
            recipients.extend(envelope.to.iter().filter_map(|a| bare_address(a)));
        }
    }
    recipients.dedup();
    // The header block alone is a valid message with an empty body.
    let headers = form.get("headers").unwrap_or_default();
    let head = format!("{}\r\n\r\n", headers.trim_end());
    let parsed = MessageParser::default().parse(head.as_bytes());
    let (message_id, in_reply_to, references, sent_at_ms) = match &parsed {
        Some(m) => (
            m.message_id().map(str::to_owned),
            m.in_reply_to().as_text().map(str::to_owned).or_else(|| {
                m.in_reply_to()
                    .as_text_list()?
                    .first()
                    .map(|s| s.to_string())
            }),
            m.references()
                .as_text_list()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .or_else(|| m.references().as_text().map(message_ids))
                .unwrap_or_default(),
            m.date().map(|d| d.to_timestamp() * 1000),
        ),
        None => (None, None, Vec::new(), None),
    };
    Ok(InboundEmail {
        from,
        from_name: display_name(from_raw),
        recipients,
        subject: form.get("subject").map(str::to_owned),
        message_id,
        in_reply_to,
        references,
        reply_text: strip_reply(form.get("text").unwrap_or_default()),
        sent_at_ms,
        attachments: form.files.clone(),
    })
}
