//! The JSON bodies Parley posts to `{base}/{phone_number_id}/messages`, and the WhatsApp limits
//! checked before anything leaves (PROTOCOLS.md, "Send"). Kept apart from the HTTP client so the
//! exact bodies are easy to read and to test against Meta's documented examples.

use serde_json::{Value, json};

use super::errors::{InvalidRequest, SendError};
use super::split::MAX_TEXT_CHARS;
use crate::domain::ProviderMessageId;

/// Reply buttons an interactive message may carry.
pub const MAX_BUTTONS: usize = 3;
/// Characters of a reply button's title.
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;
/// Characters of a reply button's id.
pub const MAX_BUTTON_ID_CHARS: usize = 256;
/// Characters of an interactive message's body text.
pub const MAX_INTERACTIVE_BODY_CHARS: usize = 1024;

/// One interactive reply button: `id` comes back in the webhook's `button_reply.id` when tapped,
/// `title` is what the prospect sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyButton {
    pub id: String,
    pub title: String,
}

impl ReplyButton {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
        }
    }
}

pub(crate) fn text(
    to: &str,
    body: &str,
    reply_to: Option<&ProviderMessageId>,
) -> Result<Value, SendError> {
    let chars = body.chars().count();
    if body.trim().is_empty() {
        return Err(SendError::invalid(InvalidRequest::EmptyBody));
    }
    if chars > MAX_TEXT_CHARS {
        return Err(SendError::invalid(InvalidRequest::TextTooLong {
            chars,
            limit: MAX_TEXT_CHARS,
        }));
    }
    let mut message = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": false, "body": body},
    });
    add_context(&mut message, reply_to);
    Ok(message)
}

pub(crate) fn template(to: &str, name: &str, language: &str, components: Value) -> Value {
    let mut template = json!({"name": name, "language": {"code": language}});
    if !components.is_null() {
        template["components"] = components;
    }
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    })
}

pub(crate) fn buttons(
    to: &str,
    body: &str,
    buttons: &[ReplyButton],
    reply_to: Option<&ProviderMessageId>,
) -> Result<Value, SendError> {
    validate_buttons(body, buttons).map_err(SendError::invalid)?;
    let buttons: Vec<Value> = buttons
        .iter()
        .map(|b| json!({"type": "reply", "reply": {"id": b.id, "title": b.title}}))
        .collect();
    let mut message = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body},
            "action": {"buttons": buttons},
        },
    });
    add_context(&mut message, reply_to);
    Ok(message)
}

pub(crate) fn mark_read(message_id: &ProviderMessageId, typing: bool) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id.as_str(),
    });
    if typing {
        body["typing_indicator"] = json!({"type": "text"});
    }
    body
}

fn add_context(message: &mut Value, reply_to: Option<&ProviderMessageId>) {
    if let Some(id) = reply_to {
        message["context"] = json!({"message_id": id.as_str()});
    }
}

fn validate_buttons(body: &str, buttons: &[ReplyButton]) -> Result<(), InvalidRequest> {
    let body_chars = body.chars().count();
    if body.trim().is_empty() {
        return Err(InvalidRequest::EmptyBody);
    }
    if body_chars > MAX_INTERACTIVE_BODY_CHARS {
        return Err(InvalidRequest::TextTooLong {
            chars: body_chars,
            limit: MAX_INTERACTIVE_BODY_CHARS,
        });
    }
    if buttons.is_empty() || buttons.len() > MAX_BUTTONS {
        return Err(InvalidRequest::ButtonCount {
            count: buttons.len(),
            max: MAX_BUTTONS,
        });
    }
    for (index, b) in buttons.iter().enumerate() {
        if b.id.trim().is_empty() || b.title.trim().is_empty() {
            return Err(InvalidRequest::ButtonEmpty { index });
        }
        let chars = b.title.chars().count();
        if chars > MAX_BUTTON_TITLE_CHARS {
            return Err(InvalidRequest::ButtonTitleTooLong {
                index,
                chars,
                limit: MAX_BUTTON_TITLE_CHARS,
            });
        }
        let chars = b.id.chars().count();
        if chars > MAX_BUTTON_ID_CHARS {
            return Err(InvalidRequest::ButtonIdTooLong {
                index,
                chars,
                limit: MAX_BUTTON_ID_CHARS,
            });
        }
        // Meta rejects the whole message when two buttons share an id or a title.
        if buttons[..index]
            .iter()
            .any(|earlier| earlier.id == b.id || earlier.title == b.title)
        {
            return Err(InvalidRequest::ButtonDuplicate { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::whatsapp::SendErrorKind;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn invalid(e: SendError) -> InvalidRequest {
        match e.kind {
            SendErrorKind::InvalidRequest(reason) => reason,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn a_text_body_matches_metas_documented_request_apart_from_the_values() {
        let mut expected = fixture("meta_doc_send_text_request.json");
        expected["text"]["preview_url"] = json!(false);
        let body = "As requested, here's the link to our latest product: \
            https://www.meta.com/quest/quest-3/";
        assert_eq!(text("+16505551234", body, None).unwrap(), expected);
    }

    #[test]
    fn a_reply_to_adds_the_context_message_id() {
        let id = ProviderMessageId::parse("wamid.ABC=").unwrap();
        let sent = text("16505551234", "Yes", Some(&id)).unwrap();
        assert_eq!(sent["context"], json!({"message_id": "wamid.ABC="}));
    }

    #[test]
    fn a_text_of_4096_characters_passes_and_4097_is_refused() {
        let ok = "é".repeat(4096);
        assert!(text("1", &ok, None).is_ok());
        let too_long = "é".repeat(4097);
        assert_eq!(
            invalid(text("1", &too_long, None).unwrap_err()),
            InvalidRequest::TextTooLong {
                chars: 4097,
                limit: 4096
            }
        );
    }

    #[test]
    fn a_buttons_body_matches_metas_documented_request_without_header_and_footer() {
        let mut expected = fixture("meta_doc_send_interactive_buttons_request.json");
        let interactive = expected["interactive"].as_object_mut().unwrap();
        interactive.remove("header");
        interactive.remove("footer");
        let body = expected["interactive"]["body"]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let sent = buttons(
            "+16505551234",
            &body,
            &[
                ReplyButton::new("change-button", "Change"),
                ReplyButton::new("cancel-button", "Cancel"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(sent, expected);
    }

    #[test]
    fn four_buttons_or_none_are_refused() {
        let four: Vec<_> = (0..4)
            .map(|i| ReplyButton::new(format!("b{i}"), format!("B{i}")))
            .collect();
        assert_eq!(
            invalid(buttons("1", "Pick", &four, None).unwrap_err()),
            InvalidRequest::ButtonCount { count: 4, max: 3 }
        );
        assert_eq!(
            invalid(buttons("1", "Pick", &[], None).unwrap_err()),
            InvalidRequest::ButtonCount { count: 0, max: 3 }
        );
    }

    #[test]
    fn a_title_of_21_characters_is_refused_and_20_passes() {
        let ok = [ReplyButton::new("a", "x".repeat(20))];
        assert!(buttons("1", "Pick", &ok, None).is_ok());
        let long = [
            ReplyButton::new("a", "ok"),
            ReplyButton::new("b", "x".repeat(21)),
        ];
        assert_eq!(
            invalid(buttons("1", "Pick", &long, None).unwrap_err()),
            InvalidRequest::ButtonTitleTooLong {
                index: 1,
                chars: 21,
                limit: 20
            }
        );
    }

    #[test]
    fn duplicate_button_ids_are_refused() {
        let dup = [ReplyButton::new("a", "Yes"), ReplyButton::new("a", "No")];
        assert_eq!(
            invalid(buttons("1", "Pick", &dup, None).unwrap_err()),
            InvalidRequest::ButtonDuplicate { index: 1 }
        );
    }

    #[test]
    fn mark_read_with_typing_matches_metas_documented_request() {
        let expected = fixture("meta_doc_mark_read_typing_request.json");
        let id = ProviderMessageId::parse(expected["message_id"].as_str().unwrap()).unwrap();
        assert_eq!(mark_read(&id, true), expected);
        assert!(mark_read(&id, false).get("typing_indicator").is_none());
    }

    #[test]
    fn a_template_carries_name_language_and_components() {
        let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]);
        let sent = template("1", "visit_reminder", "en_US", components.clone());
        assert_eq!(sent["type"], "template");
        assert_eq!(
            sent["template"],
            json!({"name": "visit_reminder", "language": {"code": "en_US"}, "components": components})
        );
        let bare = template("1", "hello_world", "en_US", Value::Null);
        assert!(bare["template"].get("components").is_none());
    }
}
