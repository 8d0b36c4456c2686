//! WAHA webhook envelopes (`{event, session, payload, ...}`) into domain messages. Unknown events
//! and fields are ignored, never rejected; a `message` without an id or sender is malformed.

use serde::Deserialize;
use serde_json::Value;

use crate::channels::http_api::media_kind;

use crate::domain::{
    Channel, InboundMessage, MessageContent, ProviderMessageId, ReplyContext, TenantId,
};

/// What one webhook carried.
#[derive(Debug, Clone, PartialEq)]
pub enum WahaEvent {
    Message(Box<InboundMessage>),
    /// `session.status`: the session's new state (`WORKING`, `FAILED`, `STOPPED`, ...).
    SessionStatus {
        session: String,
        status: String,
    },
    /// Anything Parley does not act on: other events, the business's own messages, group chats.
    Ignored {
        reason: &'static str,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WahaParseError {
    #[error("the body is not a WAHA event: {0}")]
    Envelope(serde_json::Error),
    #[error("the `{0}` field is missing or not valid")]
    Field(&'static str),
}

#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(default)]
    payload: Value,
}

#[derive(Deserialize)]
struct Payload {
    id: Option<String>,
    timestamp: Option<f64>,
    from: Option<String>,
    #[serde(default, rename = "fromMe")]
    from_me: bool,
    body: Option<String>,
    #[serde(default, rename = "hasMedia")]
    has_media: bool,
    media: Option<Media>,
    #[serde(rename = "replyTo")]
    reply_to: Option<ReplyTo>,
    #[serde(rename = "_data")]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct Media {
    url: Option<String>,
    mimetype: Option<String>,
    filename: Option<String>,
}

#[derive(Deserialize)]
struct ReplyTo {
    id: Option<String>,
}

/// Parses one webhook. `route` names the tenant of a session (`None`: no tenant owns it).
pub fn parse_event(
    raw: &[u8],
    route: impl Fn(&str) -> Option<TenantId>,
    now_ms: i64,
) -> Result<WahaEvent, WahaParseError> {
    let envelope: Envelope = serde_json::from_slice(raw).map_err(WahaParseError::Envelope)?;
    match envelope.event.as_str() {
        "message" => {}
        "session.status" => {
            let status = envelope
                .payload
                .get("status")
                .and_then(Value::as_str)
                .ok_or(WahaParseError::Field("payload.status"))?;
            return Ok(WahaEvent::SessionStatus {
                session: envelope.session,
                status: status.to_owned(),
            });
        }
        _ => return Ok(WahaEvent::Ignored { reason: "event" }),
    }
    let payload: Payload =
        serde_json::from_value(envelope.payload).map_err(|_| WahaParseError::Field("payload"))?;
    if payload.from_me {
        return Ok(WahaEvent::Ignored { reason: "from_me" });
    }
    let from = payload
        .from
        .filter(|f| !f.is_empty())
        .ok_or(WahaParseError::Field("payload.from"))?;
    if from.ends_with("@g.us") || from.ends_with("@broadcast") || from.ends_with("@newsletter") {
        return Ok(WahaEvent::Ignored { reason: "group" });
    }
    let Some(tenant) = route(&envelope.session) else {
        return Ok(WahaEvent::Ignored {
            reason: "unknown_session",
        });
    };
    let id = payload
        .id
        .as_deref()
        .and_then(|id| ProviderMessageId::parse(id).ok())
        .ok_or(WahaParseError::Field("payload.id"))?;
    let sender = normalise_chat_id(&from);
    let body = payload.body.filter(|b| !b.trim().is_empty());
    let content = match payload.media.filter(|m| m.url.is_some()) {
        Some(media) => MessageContent::Media {
            kind: media_kind(media.mimetype.as_deref()),
            media: media.url.unwrap_or_default(),
            mime_type: media.mimetype,
            sha256: None,
            caption: body,
            filename: media.filename,
            voice: false,
        },
        None if payload.has_media => MessageContent::Unknown {
            type_name: "media_not_downloaded".to_owned(),
            raw: Value::Null,
        },
        None => MessageContent::Text {
            body: body.unwrap_or_default(),
        },
    };
    let sent_at_ms = payload
        .timestamp
        .map(|s| (s * 1000.0) as i64)
        .or(envelope.timestamp.map(|ms| ms as i64))
        .unwrap_or(now_ms);
    let sender_name = payload
        .data
        .as_ref()
        .and_then(|d| d.get("notifyName"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(WahaEvent::Message(Box::new(InboundMessage {
        tenant,
        channel: Channel::Waha,
        provider_message_id: id,
        thread: sender.clone(),
        sender,
        sender_name,
        sent_at_ms,
        content,
        context: payload.reply_to.and_then(|r| r.id).map(|id| ReplyContext {
            replied_to: Some(id),
            forwarded: false,
        }),
        referral: None,
    })))
}

/// `4915112345678@c.us` and `4915112345678@s.whatsapp.net` -> `4915112345678`; other ids (such
/// as `@lid` linked ids) are kept whole, since they are not phone numbers.
pub fn normalise_chat_id(chat_id: &str) -> String {
    let chat_id = chat_id.trim();
    for suffix in ["@c.us", "@s.whatsapp.net"] {
        if let Some(number) = chat_id.strip_suffix(suffix) {
            // A device suffix (`4915...:12@s.whatsapp.net`) names the same person.
            let number = number.split(':').next().unwrap_or(number);
            return number.trim_start_matches('+').to_owned();
        }
    }
    chat_id.to_owned()
}

/// The chat id WAHA sends to for a stored address.
pub fn chat_id_for(address: &str) -> String {
    if address.contains('@') {
        address.to_owned()
    } else {
        format!("{address}@c.us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MediaKind;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn route(session: &str) -> Option<TenantId> {
        (session == "default").then(TenantId::default_tenant)
    }

    fn message(name: &str) -> InboundMessage {
        match parse_event(&fixture(name), route, 0).unwrap() {
            WahaEvent::Message(m) => *m,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn the_business_own_message_is_ignored() {
        // The documented text example has fromMe: true.
        assert_eq!(
            parse_event(&fixture("waha_doc_message_text.json"), route, 0).unwrap(),
            WahaEvent::Ignored { reason: "from_me" }
        );
    }

    #[test]
    fn an_image_with_a_caption_records_the_media_url() {
        let m = message("waha_doc_message_image_media.json");
        assert_eq!(m.sender, "11111111111");
        assert_eq!(m.sent_at_ms, 1_667_561_485_000);
        assert_eq!(m.text(), Some("Check this out (caption for the media)!"));
        assert!(matches!(
            m.content,
            MessageContent::Media { kind: MediaKind::Image, ref media, .. } if media.ends_with(".jpg")
        ));
    }

    #[test]
    fn a_document_keeps_its_filename() {
        let m = message("waha_doc_message_document.json");
        assert!(matches!(
            m.content,
            MessageContent::Media { kind: MediaKind::Document, ref filename, .. }
                if filename.as_deref() == Some("some-file.pdf")
        ));
    }

    #[test]
    fn a_reply_keeps_the_replied_to_id() {
        let m = message("waha_doc_message_reply_to.json");
        assert_eq!(m.text(), Some("Yes!"));
        assert_eq!(
            m.context.unwrap().replied_to.as_deref(),
            Some("false_22222222@c.us_AAAAAAAAAAAAAAAAAAA")
        );
    }

    #[test]
    fn reactions_and_other_events_are_ignored() {
        assert_eq!(
            parse_event(&fixture("waha_doc_message_reaction.json"), route, 0).unwrap(),
            WahaEvent::Ignored { reason: "event" }
        );
        let any = br#"{"event":"message.any","session":"default","payload":{"id":"x","from":"1@c.us","body":"hi"}}"#;
        assert_eq!(
            parse_event(any, route, 0).unwrap(),
            WahaEvent::Ignored { reason: "event" }
        );
    }

    #[test]
    fn a_session_status_is_reported() {
        assert_eq!(
            parse_event(&fixture("waha_doc_session_status.json"), route, 0).unwrap(),
            WahaEvent::SessionStatus {
                session: "default".into(),
                status: "WORKING".into()
            }
        );
    }

    #[test]
    fn chat_ids_of_both_forms_are_one_contact() {
        assert_eq!(normalise_chat_id("4915112345678@c.us"), "4915112345678");
        assert_eq!(
            normalise_chat_id("4915112345678@s.whatsapp.net"),
            "4915112345678"
        );
        assert_eq!(
            normalise_chat_id("4915112345678:3@s.whatsapp.net"),
            "4915112345678"
        );
        assert_eq!(normalise_chat_id("123456789@lid"), "123456789@lid");
        assert_eq!(chat_id_for("4915112345678"), "4915112345678@c.us");
        assert_eq!(chat_id_for("123456789@lid"), "123456789@lid");
    }

    #[test]
    fn a_message_without_an_id_is_malformed_and_junk_is_refused() {
        let raw =
            br#"{"event":"message","session":"default","payload":{"from":"1@c.us","body":"hi"}}"#;
        assert!(matches!(
            parse_event(raw, route, 0),
            Err(WahaParseError::Field("payload.id"))
        ));
        assert!(matches!(
            parse_event(b"not json", route, 0),
            Err(WahaParseError::Envelope(_))
        ));
    }
}
