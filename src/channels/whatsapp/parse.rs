//! Turns a verified webhook body into domain types: `InboundMessage`s and `StatusUpdate`s,
//! routed to a tenant by `metadata.phone_number_id`.
//!
//! What Meta may legitimately send is never an error: changes of other fields are counted and
//! ignored, messages of unknown types become `MessageContent::Unknown`, unknown status strings
//! are counted and skipped. Malformed JSON or a known part with the wrong shape is an error that
//! names where it went wrong (a path such as `entry[0].changes[1].value.messages[3].timestamp`)
//! without echoing any of the body's content, so it can be logged and shown safely.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::payload::{self, Contact, MessagesValue, WireError};
use crate::domain::{
    Channel, DeliveryStatus, InboundMessage, MediaKind, MessageContent, ProviderError,
    ProviderMessageId, Referral, ReplyContext, StatusUpdate, TenantId,
};

/// The only `object` a WhatsApp Cloud API webhook carries.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// The only change `field` Parley reads; others (account updates, template status...) are
/// counted in `ignored_changes`.
const MESSAGES_FIELD: &str = "messages";

/// Everything one delivery carried, in the order it came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedWebhook {
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<StatusUpdate>,
    /// `messages` changes whose `phone_number_id` no tenant owns; their content is dropped.
    pub unroutable_changes: usize,
    /// Changes whose `field` is not `messages`.
    pub ignored_changes: usize,
    /// Statuses whose `status` string Parley does not know (skipped).
    pub unknown_statuses: usize,
    /// Errors Meta reported for a whole change (`value.errors[]`), not tied to one message.
    pub errors: Vec<ProviderError>,
}

/// Why a webhook body could not be read. The message says where, never what the body held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookParseError {
    #[error("the WhatsApp webhook body is not valid JSON: {detail} (line {line}, column {column})")]
    Json {
        detail: String,
        line: usize,
        column: usize,
    },
    #[error("the WhatsApp webhook body has an unexpected shape at `{path}`: {detail}")]
    Shape { path: String, detail: String },
    #[error("the webhook `object` is `{object}`, expected `whatsapp_business_account`")]
    WrongObject { object: String },
}

/// The envelope's first level: `entry` is read only once `object` is known to be WhatsApp's.
#[derive(Deserialize)]
struct Outer<'a> {
    object: String,
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
}

/// Parses a webhook body. `route` maps a `phone_number_id` to the tenant that owns it.
pub fn parse_webhook(
    raw_body: &[u8],
    route: impl Fn(&str) -> Option<TenantId>,
) -> Result<ParsedWebhook, WebhookParseError> {
    let outer: Outer = match serde_json::from_slice(raw_body) {
        Ok(outer) => outer,
        // Read again, tracking the path, only to say where it went wrong.
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(raw_body);
            let outer = serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(&e))?;
            de.end().map_err(|e| json_error(&e))?;
            outer
        }
    };
    if outer.object != WHATSAPP_OBJECT {
        return Err(WebhookParseError::WrongObject {
            object: outer.object.chars().take(64).collect(),
        });
    }
    let entries: Vec<payload::Entry> = match outer.entry {
        Some(entry) => read(entry, "entry")?,
        None => Vec::new(),
    };

    let mut out = ParsedWebhook::default();
    for (e, entry) in entries.into_iter().enumerate() {
        for (c, change) in entry.changes.into_iter().enumerate() {
            if change.field != MESSAGES_FIELD {
                out.ignored_changes += 1;
                continue;
            }
            let at = format!("entry[{e}].changes[{c}].value");
            // An absent `value` fails the way an explicit `null` does.
            let value: MessagesValue = read(change.value.unwrap_or(RawValue::NULL), &at)?;
            let Some(tenant) = route(&value.metadata.phone_number_id) else {
                out.unroutable_changes += 1;
                continue;
            };
            read_change(value, &tenant, &at, &mut out)?;
        }
    }
    Ok(out)
}

fn read_change(
    value: MessagesValue,
    tenant: &TenantId,
    at: &str,
    out: &mut ParsedWebhook,
) -> Result<(), WebhookParseError> {
    for (i, raw) in value.messages.into_iter().enumerate() {
        let at = format!("{at}.messages[{i}]");
        out.messages
            .push(read_message(raw, tenant, &value.contacts, &at)?);
    }
    for (i, status) in value.statuses.into_iter().enumerate() {
        let Some(delivery) = delivery_status(&status.status) else {
            out.unknown_statuses += 1;
            continue;
        };
        let at = format!("{at}.statuses[{i}]");
        out.statuses.push(StatusUpdate {
            tenant: tenant.clone(),
            channel: Channel::Whatsapp,
            provider_message_id: provider_id(&status.id, format_args!("{at}.id"))?,
            status: delivery,
            at_ms: millis(status.timestamp, format_args!("{at}.timestamp"))?,
            error: status.errors.first().map(provider_error),
        });
    }
    out.errors.extend(value.errors.iter().map(provider_error));
    Ok(())
}

/// The statuses Meta sends for outbound messages. `queued` is Parley's own and never arrives.
fn delivery_status(raw: &str) -> Option<DeliveryStatus> {
    match raw {
        "sent" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" => Some(DeliveryStatus::Read),
        "played" => Some(DeliveryStatus::Played),
        "failed" => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

fn read_message(
    raw: &RawValue,
    tenant: &TenantId,
    contacts: &[Contact],
    at: &str,
) -> Result<InboundMessage, WebhookParseError> {
    let head: payload::Message = read(raw, at)?;
    let provider_message_id = provider_id(&head.id, format_args!("{at}.id"))?;
    let sent_at_ms = millis(head.timestamp, format_args!("{at}.timestamp"))?;
    let sender_name = contacts
        .iter()
        .find(|c| c.wa_id.as_deref() == Some(head.from.as_str()))
        .and_then(|c| c.profile.as_ref())
        .and_then(|p| p.name.clone());
    let context = head.context.as_ref().and_then(|c| {
        let forwarded = c.forwarded || c.frequently_forwarded;
        (c.id.is_some() || forwarded).then(|| ReplyContext {
            replied_to: c.id.clone(),
            forwarded,
        })
    });
    let content = read_content(&head, raw, at)?;
    let referral = head.referral.map(|r| Referral {
        source_url: r.source_url,
        source_id: r.source_id,
        source_type: r.source_type,
        headline: r.headline,
        ctwa_clid: r.ctwa_clid,
    });
    Ok(InboundMessage {
        tenant: tenant.clone(),
        channel: Channel::Whatsapp,
        provider_message_id,
        thread: head.from.clone(),
        sender: head.from,
        sender_name,
        sent_at_ms,
        content,
        context,
        referral,
    })
}

fn read_content(
    head: &payload::Message<'_>,
    raw: &RawValue,
    at: &str,
) -> Result<MessageContent, WebhookParseError> {
    let kind = head.kind.as_str();
    let media = |media_kind| -> Result<MessageContent, WebhookParseError> {
        let m: payload::Media = typed_body(head, at)?;
        Ok(MessageContent::Media {
            kind: media_kind,
            media: m.id,
            mime_type: m.mime_type,
            sha256: m.sha256,
            caption: m.caption,
            filename: m.filename,
            voice: m.voice,
        })
    };
    Ok(match kind {
        "text" => {
            let t: payload::Text = typed_body(head, at)?;
            MessageContent::Text { body: t.body }
        }
        "image" => media(MediaKind::Image)?,
        "video" => media(MediaKind::Video)?,
        "audio" => media(MediaKind::Audio)?,
        "document" => media(MediaKind::Document)?,
        "sticker" => media(MediaKind::Sticker)?,
        "interactive" => {
            let i: payload::Interactive = typed_body(head, at)?;
            let reply = match i.kind.as_str() {
                "button_reply" => i.button_reply,
                "list_reply" => i.list_reply,
                other => {
                    // Flows (`nfm_reply`) and future kinds: kept, not understood.
                    return Ok(MessageContent::Unknown {
                        type_name: format!("interactive.{other}"),
                        raw: kept(raw, at)?,
                    });
                }
            };
            let reply = reply.ok_or_else(|| missing(&format!("{at}.interactive"), &i.kind))?;
            MessageContent::InteractiveReply {
                id: reply.id,
                title: reply.title,
                description: reply.description,
            }
        }
        "button" => {
            let b: payload::Button = typed_body(head, at)?;
            MessageContent::ButtonReply {
                payload: b.payload,
                text: b.text,
            }
        }
        "location" => {
            let l: payload::Location = typed_body(head, at)?;
            MessageContent::Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: l.name,
                address: l.address,
                url: l.url,
            }
        }
        "reaction" => {
            let r: payload::Reaction = typed_body(head, at)?;
            MessageContent::Reaction {
                message_id: r.message_id,
                emoji: r.emoji.filter(|e| !e.is_empty()),
            }
        }
        "contacts" => match typed_body(head, at)? {
            Value::Array(cards) => MessageContent::Contacts {
                count: cards.len(),
                raw: Value::Array(cards),
            },
            _ => {
                return Err(WebhookParseError::Shape {
                    path: format!("{at}.contacts"),
                    detail: "expected an array of contact cards".to_owned(),
                });
            }
        },
        "unsupported" => {
            let what: Option<payload::Unsupported> = match head.body(kind) {
                Some(v) => Some(read(v, format_args!("{at}.unsupported"))?),
                None => None,
            };
            let first = head.errors.first();
            let detail = first
                .and_then(|e| e.error_data.as_ref().and_then(|d| d.details.clone()))
                .or_else(|| first.and_then(|e| e.title.clone()));
            let detail = match (detail, what.and_then(|w| w.kind)) {
                (Some(d), Some(k)) => Some(format!("{d} (unsupported type `{k}`)")),
                (None, Some(k)) => Some(format!("unsupported type `{k}`")),
                (d, None) => d,
            };
            MessageContent::Unsupported {
                error_code: first.map(|e| e.code),
                detail,
            }
        }
        other => MessageContent::Unknown {
            type_name: other.to_owned(),
            raw: kept(raw, at)?,
        },
    })
}

fn provider_error(e: &WireError) -> ProviderError {
    ProviderError {
        code: e.code,
        title: e.title.clone().or_else(|| e.message.clone()),
    }
}

fn provider_id(raw: &str, at: impl fmt::Display) -> Result<ProviderMessageId, WebhookParseError> {
    ProviderMessageId::parse(raw).map_err(|detail| WebhookParseError::Shape {
        path: at.to_string(),
        detail,
    })
}

fn millis(seconds: i64, at: impl fmt::Display) -> Result<i64, WebhookParseError> {
    seconds
        .checked_mul(1000)
        .ok_or_else(|| WebhookParseError::Shape {
            path: at.to_string(),
            detail: "Unix seconds out of range".to_owned(),
        })
}

fn missing(at: &str, key: &str) -> WebhookParseError {
    WebhookParseError::Shape {
        path: at.to_owned(),
        detail: format!("missing field `{key}`"),
    }
}

/// Reads a part of the body into its typed form. Only when that fails is it read again with the
/// path tracked (which costs an allocation per key) to say where; `at`, the part's own path, is
/// written out only then.
fn read<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    at: impl fmt::Display,
) -> Result<T, WebhookParseError> {
    match serde_json::from_str(raw.get()) {
        Ok(value) => Ok(value),
        Err(_) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            serde_path_to_error::deserialize(&mut de).map_err(|e| shape_error(&at.to_string(), &e))
        }
    }
}

/// The message's type-specific body (`message.text`, `message.image`...: the key its `type`
/// names), read into its typed form.
fn typed_body<'a, T: Deserialize<'a>>(
    head: &payload::Message<'a>,
    at: &str,
) -> Result<T, WebhookParseError> {
    let kind = head.kind.as_str();
    let raw = head.body(kind).ok_or_else(|| missing(at, kind))?;
    read(raw, format_args!("{at}.{kind}"))
}

/// A part kept as it came (an unknown message type, contact cards), as a JSON value.
fn kept(raw: &RawValue, at: impl fmt::Display) -> Result<Value, WebhookParseError> {
    read(raw, at)
}

/// An error while reading the raw body: bad JSON, or a bad first level.
fn body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> WebhookParseError {
    if e.inner().is_data() {
        shape_error("", e)
    } else {
        json_error(e.inner())
    }
}

fn json_error(e: &serde_json::Error) -> WebhookParseError {
    WebhookParseError::Json {
        detail: describe(e),
        line: e.line(),
        column: e.column(),
    }
}

fn shape_error(at: &str, e: &serde_path_to_error::Error<serde_json::Error>) -> WebhookParseError {
    let inner = e.path().to_string();
    let path = match (at, inner.as_str()) {
        ("", ".") => "(top level)".to_owned(),
        (at, ".") => at.to_owned(),
        ("", inner) => inner.to_owned(),
        (at, inner) if inner.starts_with('[') => format!("{at}{inner}"),
        (at, inner) => format!("{at}.{inner}"),
    };
    WebhookParseError::Shape {
        path,
        detail: describe(e.inner()),
    }
}

/// serde_json's message without its position and without any value it quotes: `invalid type:
/// string "<the customer's text>", expected i64` becomes `invalid type: string, expected i64`.
fn describe(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) if e.line() > 0 => &full[..i],
        _ => full.as_str(),
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let kind = rest.split(['"', '`', ',']).next().unwrap_or("").trim();
            return match rest.rfind(", expected ") {
                Some(i) => format!("{prefix}{kind}{}", &rest[i..]),
                None => format!("{prefix}{kind}"),
            };
        }
    }
    msg.to_owned()
}
