//! Twilio's form parameters into domain types. One endpoint receives both inbound messages
//! (WhatsApp when `From` is `whatsapp:+<E.164>`, SMS otherwise) and status callbacks for
//! messages Parley sent (they carry `MessageStatus`).
//!
//! The sender's address is kept as Twilio writes it (`whatsapp:+27...` or `+1...`): replies go
//! to that exact address, and the prefix tells WhatsApp and SMS conversations apart. Twilio sends
//! no timestamp, so a message is dated when it arrives. Media URLs are recorded, never fetched.

use serde_json::json;

use crate::channels::http_api::media_kind;

use crate::domain::{
    Channel, DeliveryStatus, InboundMessage, MessageContent, ProviderError, ProviderMessageId,
    StatusUpdate, TenantId,
};

/// Twilio's error for a WhatsApp message sent outside the 24-hour window (Meta's 131047).
pub const OUTSIDE_WINDOW: i64 = 63016;

/// What one Twilio request carried.
#[derive(Debug, Clone, PartialEq)]
pub enum TwilioEvent {
    /// An inbound message; extra media items (beyond the first) follow it as recorded-only
    /// messages so every URL is kept. `opt_out` is Twilio's `OptOutType` (`STOP`, `START`,
    /// `HELP`) when Advanced Opt-Out classified the message.
    Messages {
        messages: Vec<InboundMessage>,
        opt_out: Option<String>,
    },
    Status(StatusUpdate),
    /// A status Parley does not track (`queued`, `sending`, `accepted`...).
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioParseError {
    #[error("the `{0}` parameter is missing")]
    Missing(&'static str),
    #[error("the `{0}` parameter is not valid")]
    Invalid(&'static str),
}

/// Parses a webhook's parameters. `route` names the tenant that owns a Twilio number of ours
/// (`To` of an inbound message, `From` of a status callback).
pub fn parse_form(
    params: &[(String, String)],
    route: impl Fn(&str) -> TenantId,
    now_ms: i64,
) -> Result<TwilioEvent, TwilioParseError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let sid = get("MessageSid")
        .or_else(|| get("SmsMessageSid"))
        .or_else(|| get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or(TwilioParseError::Missing("MessageSid"))?;
    let provider_message_id =
        ProviderMessageId::parse(sid).map_err(|_| TwilioParseError::Invalid("MessageSid"))?;

    if let Some(status) = get("MessageStatus").filter(|s| *s != "received") {
        let ours = get("From").unwrap_or_default();
        let Some(status) = delivery_status(status) else {
            return Ok(TwilioEvent::Ignored);
        };
        let error = get("ErrorCode")
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.trim()
                    .parse::<i64>()
                    .map_err(|_| TwilioParseError::Invalid("ErrorCode"))
            })
            .transpose()?
            .map(|code| ProviderError {
                code,
                title: get("ErrorMessage").map(str::to_owned),
            });
        return Ok(TwilioEvent::Status(StatusUpdate {
            tenant: route(strip_channel(ours)),
            channel: Channel::Twilio,
            provider_message_id,
            status,
            at_ms: now_ms,
            error,
        }));
    }

    let sender = get("From")
        .filter(|s| !s.trim().is_empty())
        .ok_or(TwilioParseError::Missing("From"))?
        .trim()
        .to_owned();
    let tenant = route(strip_channel(get("To").unwrap_or_default()));
    let body = get("Body").unwrap_or_default();
    let media_count: usize = match get("NumMedia").filter(|n| !n.is_empty()) {
        Some(n) => n
            .trim()
            .parse()
            .map_err(|_| TwilioParseError::Invalid("NumMedia"))?,
        None => 0,
    };
    let media: Vec<(String, Option<String>)> = (0..media_count)
        .filter_map(|i| {
            let url = get(&format!("MediaUrl{i}"))?;
            Some((
                url.to_owned(),
                get(&format!("MediaContentType{i}")).map(str::to_owned),
            ))
        })
        .collect();

    let content = if let Some(keyword) = get("OptOutType").filter(|k| !k.is_empty()) {
        MessageContent::Text {
            body: opt_out_text(keyword, body),
        }
    } else if let Some((url, mime)) = media.first() {
        MessageContent::Media {
            kind: media_kind(mime.as_deref()),
            media: url.clone(),
            mime_type: mime.clone(),
            sha256: None,
            caption: (!body.trim().is_empty()).then(|| body.to_owned()),
            filename: None,
            voice: false,
        }
    } else if let (Some(lat), Some(lon)) = (get("Latitude"), get("Longitude")) {
        MessageContent::Location {
            latitude: lat
                .trim()
                .parse()
                .map_err(|_| TwilioParseError::Invalid("Latitude"))?,
            longitude: lon
                .trim()
                .parse()
                .map_err(|_| TwilioParseError::Invalid("Longitude"))?,
            name: get("Label").map(str::to_owned),
            address: get("Address").map(str::to_owned),
            url: None,
        }
    } else if let Some(payload) = get("ButtonPayload").filter(|p| !p.is_empty()) {
        MessageContent::ButtonReply {
            payload: payload.to_owned(),
            text: get("ButtonText").unwrap_or(body).to_owned(),
        }
    } else {
        MessageContent::Text {
            body: body.to_owned(),
        }
    };

    let message = InboundMessage {
        tenant: tenant.clone(),
        channel: Channel::Twilio,
        provider_message_id,
        thread: sender.clone(),
        sender: sender.clone(),
        sender_name: get("ProfileName")
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        sent_at_ms: now_ms,
        content,
        context: None,
        referral: None,
    };
    let mut messages = vec![message];
    for (index, (url, mime)) in media.iter().enumerate().skip(1) {
        let id = ProviderMessageId::parse(&format!("{sid}/media/{index}"))
            .map_err(|_| TwilioParseError::Invalid("MessageSid"))?;
        messages.push(InboundMessage {
            provider_message_id: id,
            content: MessageContent::Unknown {
                type_name: "twilio_media".to_owned(),
                raw: json!({ "url": url, "content_type": mime }),
            },
            ..messages[0].clone()
        });
    }
    Ok(TwilioEvent::Messages {
        messages,
        opt_out: get("OptOutType")
            .map(|k| k.trim().to_ascii_uppercase())
            .filter(|k| !k.is_empty()),
    })
}

/// The text recorded for a message Twilio's Advanced Opt-Out classified (`OptOutType` STOP,
/// START or HELP). Twilio matched it against the account's keyword lists, which may hold custom
/// or other-language words Parley's own list lacks; recording Twilio's keyword makes the consent
/// step act exactly as Twilio already did (Twilio blocks sends after a STOP itself). When the
/// prospect wrote the keyword, their text is kept as it was; otherwise both are recorded.
fn opt_out_text(keyword: &str, body: &str) -> String {
    let keyword = keyword.trim().to_ascii_uppercase();
    if body.trim().eq_ignore_ascii_case(&keyword) {
        body.trim().to_owned()
    } else {
        keyword
    }
}

/// `whatsapp:+1415...` -> `+1415...` (the number, for routing to a tenant).
pub(crate) fn strip_channel(address: &str) -> &str {
    address
        .trim()
        .strip_prefix("whatsapp:")
        .unwrap_or(address.trim())
}

/// Twilio's message statuses Parley records; the in-flight ones are ignored.
fn delivery_status(raw: &str) -> Option<DeliveryStatus> {
    match raw {
        "sent" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" => Some(DeliveryStatus::Read),
        "failed" | "undelivered" | "canceled" => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MediaKind;

    fn fixture(name: &str) -> Vec<(String, String)> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read(path).unwrap();
        form_urlencoded::parse(&raw).into_owned().collect()
    }

    fn default_route(_: &str) -> TenantId {
        TenantId::default_tenant()
    }

    fn only_message(name: &str) -> InboundMessage {
        match parse_form(&fixture(name), default_route, 1_000).unwrap() {
            TwilioEvent::Messages {
                messages: mut m, ..
            } => {
                assert_eq!(m.len(), 1);
                m.remove(0)
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_whatsapp_text_keeps_the_prefixed_sender_and_profile_name() {
        let m = only_message("twilio_whatsapp_inbound_text_chatsaude.txt");
        assert_eq!(m.channel, Channel::Twilio);
        assert_eq!(m.sender, "whatsapp:+558282136275");
        assert_eq!(m.thread, m.sender);
        assert_eq!(m.sender_name.as_deref(), Some("Jhonata"));
        assert_eq!(
            m.provider_message_id.as_str(),
            "SM01cd3925943ee3504f8a5c42d88efdf6"
        );
        assert_eq!(m.text(), Some("Olá"));
        assert_eq!(m.sent_at_ms, 1_000);
    }

    #[test]
    fn a_second_whatsapp_text_fixture_parses() {
        let m = only_message("twilio_whatsapp_inbound_text_covidbot.txt");
        assert_eq!(m.text(), Some("What is Covid?"));
        assert_eq!(m.sender_name, None);
    }

    #[test]
    fn an_image_records_its_media_url_and_type() {
        let m = only_message("twilio_whatsapp_inbound_image_covidbot.txt");
        match m.content {
            MessageContent::Media {
                kind: MediaKind::Image,
                ref media,
                ref mime_type,
                caption: None,
                ..
            } => {
                assert!(media.starts_with("https://api.twilio.com/2010-04-01/Accounts/"));
                assert!(media.ends_with("/Media/ME79963175e7bbff089a0805b0aeb96b1d"));
                assert_eq!(mime_type.as_deref(), Some("image/jpeg"));
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_sms_stop_with_opt_out_type_is_recorded_as_the_keyword() {
        let m = only_message("twilio_sms_inbound_stop_optouttype_gist.txt");
        assert_eq!(m.sender, "+1234567890");
        assert_eq!(m.text(), Some("stop"));
        let mut params = fixture("twilio_sms_inbound_stop_optouttype_gist.txt");
        for (k, v) in params.iter_mut() {
            if k == "Body" {
                *v = "arrête s'il vous plaît".into();
            }
        }
        let TwilioEvent::Messages {
            messages: m,
            opt_out,
        } = parse_form(&params, default_route, 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(m[0].text(), Some("STOP"));
        assert_eq!(opt_out.as_deref(), Some("STOP"));
    }

    #[test]
    fn every_media_url_is_recorded() {
        let mut params = fixture("twilio_whatsapp_inbound_image_covidbot.txt");
        for (k, v) in params.iter_mut() {
            if k == "NumMedia" {
                *v = "2".into();
            }
        }
        params.push(("MediaUrl1".into(), "https://api.twilio.com/m/2".into()));
        params.push(("MediaContentType1".into(), "application/pdf".into()));
        let TwilioEvent::Messages {
            messages: m,
            opt_out,
        } = parse_form(&params, default_route, 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(opt_out, None);
        assert_eq!(m.len(), 2);
        assert!(!m[1].content.expects_reply());
        assert!(m[1].provider_message_id.as_str().ends_with("/media/1"));
    }

    #[test]
    fn a_status_callback_becomes_a_status_with_its_error_code() {
        let params: Vec<(String, String)> = [
            ("MessageSid", "SM123"),
            ("MessageStatus", "undelivered"),
            ("SmsStatus", "undelivered"),
            ("From", "whatsapp:+14155238886"),
            ("To", "whatsapp:+15005550006"),
            ("ErrorCode", "63016"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let seen = std::sync::Mutex::new(String::new());
        let event = parse_form(
            &params,
            |n| {
                *seen.lock().unwrap() = n.to_owned();
                TenantId::default_tenant()
            },
            5,
        )
        .unwrap();
        assert_eq!(*seen.lock().unwrap(), "+14155238886");
        let TwilioEvent::Status(s) = event else {
            panic!("{event:?}")
        };
        assert_eq!(s.status, DeliveryStatus::Failed);
        assert_eq!(s.error.unwrap().code, OUTSIDE_WINDOW);
    }

    #[test]
    fn in_flight_statuses_are_ignored_and_a_missing_sid_is_an_error() {
        let params = vec![
            ("MessageSid".to_owned(), "SM1".to_owned()),
            ("MessageStatus".to_owned(), "sending".to_owned()),
        ];
        assert_eq!(
            parse_form(&params, default_route, 0).unwrap(),
            TwilioEvent::Ignored
        );
        let params = vec![("Body".to_owned(), "hi".to_owned())];
        assert_eq!(
            parse_form(&params, default_route, 0),
            Err(TwilioParseError::Missing("MessageSid"))
        );
    }
}
