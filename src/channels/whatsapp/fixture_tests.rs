//! `parse_webhook` against real deliveries: Meta's documented examples and captures kept by
//! pywa and whatsapp-business-java-api (tests/fixtures, provenance in SOURCES.md), then the
//! cases Meta's examples do not cover (batches, routing, unknown types, malformed bodies).

use serde_json::{Value, json};

use super::*;
use crate::domain::{
    Channel, DeliveryStatus, InboundMessage, MediaKind, MessageContent, ProviderError,
    ReplyContext, StatusUpdate, TenantId,
};

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn everyone(_: &str) -> Option<TenantId> {
    Some(TenantId::default_tenant())
}

fn parse_fixture(name: &str) -> ParsedWebhook {
    parse_webhook(&fixture(name), everyone).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn only_message(name: &str) -> InboundMessage {
    let parsed = parse_fixture(name);
    assert_eq!(parsed.statuses, vec![], "{name} has statuses");
    assert_eq!(parsed.messages.len(), 1, "{name}");
    parsed.messages.into_iter().next().unwrap()
}

fn only_status(name: &str) -> StatusUpdate {
    let parsed = parse_fixture(name);
    assert_eq!(parsed.messages, vec![], "{name} has messages");
    assert_eq!(parsed.statuses.len(), 1, "{name}");
    parsed.statuses.into_iter().next().unwrap()
}

/// Every webhook fixture (not the send requests and responses) parses to exactly one message or
/// one status, with nothing ignored.
#[test]
fn every_whatsapp_webhook_fixture_parses_to_one_event() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let whatsapp = ["meta_doc_", "pywa_", "javaapi_"]
            .iter()
            .any(|p| name.starts_with(p));
        let outbound = name.contains("_request") || name.contains("_response");
        if !whatsapp || outbound || !name.ends_with(".json") {
            continue;
        }
        let parsed = parse_fixture(&name);
        assert_eq!(
            parsed.messages.len() + parsed.statuses.len(),
            1,
            "{name}: {parsed:?}"
        );
        assert_eq!(parsed.ignored_changes + parsed.unroutable_changes, 0);
        assert_eq!(parsed.unknown_statuses, 0);
        seen += 1;
    }
    assert_eq!(
        seen, 39,
        "the fixture set changed: update the specific tests too"
    );
}

#[test]
fn a_text_message_from_metas_docs_has_sender_name_and_time() {
    let m = only_message("meta_doc_text_message.json");
    assert_eq!(m.tenant, TenantId::default_tenant());
    assert_eq!(m.channel, Channel::Whatsapp);
    assert_eq!(
        m.provider_message_id.as_str(),
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    );
    assert_eq!(m.sender, "16505551234");
    assert_eq!(m.thread, "16505551234");
    assert_eq!(m.sender_name.as_deref(), Some("Sheena Nelson"));
    assert_eq!(m.sent_at_ms, 1_749_416_383_000);
    assert_eq!(
        m.content,
        MessageContent::Text {
            body: "Does it come in another color?".into()
        }
    );
    assert_eq!(m.context, None);
    assert_eq!(m.referral, None);
}

#[test]
fn the_signed_pywa_delivery_is_a_text_routed_by_its_phone_number_id() {
    let route = |id: &str| (id == "277321005464405").then(|| TenantId::parse("pywa").unwrap());
    let parsed = parse_webhook(&fixture("pywa_signed_webhook_body.json"), route).unwrap();
    let m = &parsed.messages[0];
    assert_eq!(m.tenant.as_str(), "pywa");
    assert_eq!(m.text(), Some("Hey there! I am using PyWa."));
    assert_eq!(m.sender_name.as_deref(), Some("PyWa Tests"));
}

#[test]
fn a_click_to_whatsapp_ad_message_carries_its_referral() {
    let m = only_message("meta_doc_text_click_to_whatsapp_ad_referral.json");
    assert_eq!(m.text(), Some("Can I get more info about this?"));
    let r = m.referral.expect("referral");
    assert_eq!(r.source_url.as_deref(), Some("https://fb.me/3cr4Wqqkv"));
    assert_eq!(r.source_id.as_deref(), Some("120226305854810726"));
    assert_eq!(r.source_type.as_deref(), Some("ad"));
    assert_eq!(r.headline.as_deref(), Some("Chat with us"));
    assert!(
        r.ctwa_clid
            .as_deref()
            .unwrap()
            .starts_with("Aff-n8ZTODiE79d22KtAwQ")
    );
}

#[test]
fn an_interactive_button_reply_gives_id_title_and_the_message_replied_to() {
    let m = only_message("meta_doc_interactive_button_reply.json");
    assert_eq!(
        m.content,
        MessageContent::InteractiveReply {
            id: "cancel-button".into(),
            title: "Cancel".into(),
            description: None
        }
    );
    assert_eq!(
        m.context,
        Some(ReplyContext {
            replied_to: Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MEM2RUJFNkI0RENGQTVDRjUA".into()),
            forwarded: false
        })
    );
    assert_eq!(m.text(), Some("Cancel"));
}

#[test]
fn an_interactive_list_reply_gives_id_title_and_description() {
    let m = only_message("meta_doc_interactive_list_reply.json");
    assert_eq!(
        m.content,
        MessageContent::InteractiveReply {
            id: "priority_express".into(),
            title: "Priority Mail Express".into(),
            description: Some("Next Day to 2 Days".into())
        }
    );
}

#[test]
fn pywa_button_and_list_callbacks_are_interactive_replies() {
    let button = only_message("pywa_callback_button_button.json");
    assert_eq!(
        button.content,
        MessageContent::InteractiveReply {
            id: "callback_data".into(),
            title: "title".into(),
            description: None
        }
    );
    let list = only_message("pywa_callback_selection_callback.json");
    assert_eq!(list.provider_message_id.as_str(), "wamid.zyzxyz");
    assert!(matches!(
        list.content,
        MessageContent::InteractiveReply { ref id, .. } if id == "callback_data"
    ));
}

#[test]
fn a_template_quick_reply_is_a_button_reply_with_payload_and_text() {
    let m = only_message("pywa_callback_button_quick_reply.json");
    assert_eq!(
        m.content,
        MessageContent::ButtonReply {
            payload: "callback_data".into(),
            text: "title".into()
        }
    );
    assert_eq!(
        m.context.unwrap().replied_to.as_deref(),
        Some("wamid.xyzxyz==")
    );
    let java = only_message("javaapi_buttonMessage.json");
    assert_eq!(
        java.content,
        MessageContent::ButtonReply {
            payload: "SIM".into(),
            text: "SIM".into()
        }
    );
}

#[test]
fn an_image_carries_its_media_id_mime_type_and_hash() {
    let m = only_message("pywa_message_image.json");
    assert_eq!(
        m.content,
        MessageContent::Media {
            kind: MediaKind::Image,
            media: "65463453".into(),
            mime_type: Some("image/jpeg".into()),
            sha256: Some("4654+8g=".into()),
            caption: None,
            filename: None,
            voice: false
        }
    );
    let java = only_message("javaapi_imageMessage.json");
    assert!(matches!(
        java.content,
        MessageContent::Media { kind: MediaKind::Image, ref media, .. } if media == "8472976218001204"
    ));
}

#[test]
fn a_forwarded_video_keeps_its_caption_and_is_marked_forwarded() {
    let m = only_message("pywa_message_video.json");
    assert!(matches!(
        m.content,
        MessageContent::Media { kind: MediaKind::Video, ref caption, .. }
            if caption.as_deref() == Some("caption")
    ));
    assert_eq!(m.text(), Some("caption"));
    assert_eq!(
        m.context,
        Some(ReplyContext {
            replied_to: None,
            forwarded: true
        })
    );
}

#[test]
fn a_document_keeps_caption_and_filename() {
    let m = only_message("pywa_message_document.json");
    let MessageContent::Media {
        kind,
        caption,
        filename,
        mime_type,
        ..
    } = m.content
    else {
        panic!("not media: {:?}", m.content)
    };
    assert_eq!(kind, MediaKind::Document);
    assert_eq!(caption.as_deref(), Some("caption"));
    assert_eq!(filename.as_deref(), Some("filename.pdf"));
    assert_eq!(mime_type.as_deref(), Some("application/pdf"));
    let java = only_message("javaapi_documentMessage.json");
    assert!(matches!(
        java.content,
        MessageContent::Media { ref filename, caption: None, .. }
            if filename.as_deref() == Some("4_641947.pdf")
    ));
}

#[test]
fn a_voice_note_is_audio_with_voice_true_and_an_audio_file_is_not() {
    for name in ["pywa_message_voice.json", "javaapi_audioMessage.json"] {
        let m = only_message(name);
        assert!(
            matches!(
                m.content,
                MessageContent::Media {
                    kind: MediaKind::Audio,
                    voice: true,
                    ..
                }
            ),
            "{name}: {:?}",
            m.content
        );
    }
    let file = only_message("pywa_message_audio.json");
    assert!(matches!(
        file.content,
        MessageContent::Media { kind: MediaKind::Audio, voice: false, ref mime_type, .. }
            if mime_type.as_deref() == Some("audio/ogg; codecs=opus")
    ));
}

#[test]
fn a_sticker_is_media_of_kind_sticker() {
    let body = envelope(json!([{
        "from": "1", "id": "wamid.S", "timestamp": "1", "type": "sticker",
        "sticker": {"mime_type": "image/webp", "sha256": "x", "id": "777", "animated": false}
    }]));
    let parsed = parse_webhook(&body, everyone).unwrap();
    assert!(matches!(
        parsed.messages[0].content,
        MessageContent::Media { kind: MediaKind::Sticker, ref media, .. } if media == "777"
    ));
}

#[test]
fn a_chosen_location_has_name_address_and_url() {
    let m = only_message("pywa_message_chosen_location.json");
    assert_eq!(
        m.content,
        MessageContent::Location {
            latitude: 37.4611978,
            longitude: -122.2164385,
            name: Some("Facebook HQ".into()),
            address: Some("1 Hacker Way, Menlo Park, CA 94025".into()),
            url: Some("https://maps.google.com/?cid=2000000000000000000".into())
        }
    );
}

#[test]
fn a_current_location_has_only_coordinates() {
    let m = only_message("pywa_message_current_location.json");
    assert_eq!(
        m.content,
        MessageContent::Location {
            latitude: 12.25089,
            longitude: 43.90539,
            name: None,
            address: None,
            url: None
        }
    );
    let java = only_message("javaapi_locationMessage.json");
    assert!(matches!(
        java.content,
        MessageContent::Location { latitude, ref url, name: None, .. }
            if latitude == -10.93941311633
                && url.as_deref() == Some("https://foursquare.com/v/5c42c5667d8497002c6e09f9")
    ));
}

#[test]
fn a_reaction_names_the_message_and_the_emoji() {
    let m = only_message("pywa_message_reaction.json");
    assert_eq!(
        m.content,
        MessageContent::Reaction {
            message_id: "wamid.yzxyzx=".into(),
            emoji: Some("\u{1F62E}".into())
        }
    );
    assert!(!m.content.expects_reply());
    let java = only_message("javaapi_reactMessage.json");
    assert!(matches!(
        java.content,
        MessageContent::Reaction { ref emoji, .. } if emoji.as_deref() == Some("\u{1F44D}")
    ));
}

#[test]
fn an_empty_reaction_emoji_means_the_reaction_was_removed() {
    let m = only_message("pywa_message_unreaction_empty.json");
    assert_eq!(
        m.content,
        MessageContent::Reaction {
            message_id: "wamid.yzxyzx=".into(),
            emoji: None
        }
    );
}

#[test]
fn shared_contacts_are_counted_and_kept_raw() {
    let m = only_message("pywa_message_contacts.json");
    let MessageContent::Contacts { count, raw } = m.content else {
        panic!("not contacts: {:?}", m.content)
    };
    assert_eq!(count, 3);
    assert_eq!(raw[1]["name"]["formatted_name"], "Monica");
    // The contact cards are not the sender's profile.
    assert_eq!(m.sender_name.as_deref(), Some("Test Name"));
}

#[test]
fn an_unsupported_message_keeps_error_131051_and_what_was_unsupported() {
    let m = only_message("meta_doc_unsupported_131051.json");
    assert_eq!(
        m.content,
        MessageContent::Unsupported {
            error_code: Some(131051),
            detail: Some(
                "Message type is currently not supported. (unsupported type `edit`)".into()
            )
        }
    );
    for name in [
        "pywa_message_unsupported.json",
        "javaapi_messageDeleted.json",
    ] {
        let m = only_message(name);
        assert_eq!(
            m.content,
            MessageContent::Unsupported {
                error_code: Some(131051),
                detail: Some("Message type is currently not supported.".into())
            },
            "{name}"
        );
    }
}

#[test]
fn a_reply_names_the_message_replied_to() {
    let m = only_message("pywa_message_reply.json");
    assert_eq!(m.text(), Some("replied text"));
    assert_eq!(
        m.context,
        Some(ReplyContext {
            replied_to: Some("wamid.xyzxyz==".into()),
            forwarded: false
        })
    );
}

#[test]
fn a_forwarded_text_is_marked_forwarded_and_a_frequently_forwarded_one_too() {
    let m = only_message("pywa_message_forwarded.json");
    assert_eq!(m.text(), Some("forwarded text"));
    assert!(m.context.unwrap().forwarded);
    let body = envelope(json!([{
        "from": "1", "id": "wamid.F", "timestamp": "1", "type": "text",
        "context": {"frequently_forwarded": true}, "text": {"body": "chain letter"}
    }]));
    let parsed = parse_webhook(&body, everyone).unwrap();
    assert_eq!(
        parsed.messages[0].context,
        Some(ReplyContext {
            replied_to: None,
            forwarded: true
        })
    );
}

#[test]
fn sent_delivered_and_read_statuses_map_to_delivery_statuses() {
    let cases = [
        (
            "pywa_message_status_sent.json",
            DeliveryStatus::Sent,
            1_698_266_945_000,
        ),
        (
            "pywa_message_status_delivered.json",
            DeliveryStatus::Delivered,
            1_698_266_945_000,
        ),
        (
            "pywa_message_status_read.json",
            DeliveryStatus::Read,
            1_689_380_458_000,
        ),
        (
            "meta_doc_status_sent_marketing_pmp.json",
            DeliveryStatus::Sent,
            1_750_030_073_000,
        ),
        (
            "meta_doc_status_v24_minimal.json",
            DeliveryStatus::Sent,
            1_750_030_073_000,
        ),
        (
            "javaapi_textMessageStatusDelivered.json",
            DeliveryStatus::Delivered,
            1_673_020_317_000,
        ),
    ];
    for (name, status, at_ms) in cases {
        let s = only_status(name);
        assert_eq!(s.status, status, "{name}");
        assert_eq!(s.at_ms, at_ms, "{name}");
        assert_eq!(s.error, None, "{name}");
        assert_eq!(s.channel, Channel::Whatsapp);
    }
    assert_eq!(
        only_status("meta_doc_status_v24_minimal.json")
            .provider_message_id
            .as_str(),
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
    );
}

#[test]
fn failed_statuses_carry_metas_error_code_and_title() {
    let cases = [
        (
            "javaapi_reEngagementMessageError.json",
            131047,
            "Re-engagement message",
        ),
        (
            "meta_doc_status_failed_131049.json",
            131049,
            "This message was not delivered to maintain healthy ecosystem engagement.",
        ),
        (
            "pywa_message_status_failed.json",
            130472,
            "User's number is part of an experiment",
        ),
    ];
    for (name, code, title) in cases {
        let s = only_status(name);
        assert_eq!(s.status, DeliveryStatus::Failed, "{name}");
        assert_eq!(
            s.error,
            Some(ProviderError {
                code,
                title: Some(title.into())
            }),
            "{name}"
        );
    }
}

/// A `messages` change for phone number id `PNID` holding `messages`.
fn envelope(messages: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "PNID"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "1"}],
            "messages": messages
        }}]}]
    }))
    .unwrap()
}

#[test]
fn an_unknown_message_type_is_kept_raw_not_rejected() {
    let order = json!({
        "from": "1", "id": "wamid.O", "timestamp": "1700000000", "type": "order",
        "order": {"catalog_id": "42", "product_items": [{"product_retailer_id": "sku-1"}]}
    });
    let parsed = parse_webhook(&envelope(json!([order.clone()])), everyone).unwrap();
    let m = &parsed.messages[0];
    assert_eq!(
        m.content,
        MessageContent::Unknown {
            type_name: "order".into(),
            raw: order
        }
    );
    assert_eq!(m.sent_at_ms, 1_700_000_000_000);
    assert!(!m.content.expects_reply());
}

#[test]
fn escaped_strings_are_read_whole_from_the_raw_body() {
    // Written by hand, as Meta escapes: `\u` sequences, quotes and a newline in the text, an
    // escaped key and value inside an unknown type's body.
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P"},"contacts":[{"profile":{"name":"Ana \u00c9lise"},"wa_id":"1"}],"messages":[
        {"from":"1","id":"wamid.\u0041","timestamp":"1","type":"text","text":{"body":"Caf\u00e9 \"2 BHK\"\nprice? \ud83c\udfe0"}},
        {"from":"1","id":"wamid.B","timestamp":"1","type":"poll","poll":{"qu\u00e9stion":"\"x\""}}]}}]}]}"#;
    let parsed = parse_webhook(body, everyone).unwrap();
    let text = &parsed.messages[0];
    assert_eq!(text.provider_message_id.as_str(), "wamid.A");
    assert_eq!(text.sender_name.as_deref(), Some("Ana \u{c9}lise"));
    assert_eq!(
        text.content,
        MessageContent::Text {
            body: "Caf\u{e9} \"2 BHK\"\nprice? \u{1f3e0}".into()
        }
    );
    let MessageContent::Unknown { type_name, raw } = &parsed.messages[1].content else {
        panic!("{:?}", parsed.messages[1].content);
    };
    assert_eq!(type_name, "poll");
    assert_eq!(raw["poll"], json!({"qu\u{e9}stion": "\"x\""}));
}

#[test]
fn a_null_part_reads_as_missing_or_as_the_wrong_type() {
    // A `null` type body is a missing one.
    let body = envelope(
        json!([{"from": "1", "id": "wamid.1", "timestamp": "1", "type": "text", "text": null}]),
    );
    assert_eq!(
        parse_webhook(&body, everyone).unwrap_err(),
        WebhookParseError::Shape {
            path: "entry[0].changes[0].value.messages[0]".into(),
            detail: "missing field `text`".into()
        }
    );
    // A `messages` change whose value is null, or absent, has the wrong shape.
    for value in [r#","value":null"#, ""] {
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages"{value}}}]}}]}}"#
        );
        let err = parse_webhook(body.as_bytes(), everyone).unwrap_err();
        assert_eq!(
            err,
            WebhookParseError::Shape {
                path: "entry[0].changes[0].value".into(),
                detail: "invalid type: null, expected struct MessagesValue".into()
            },
            "{body}"
        );
    }
    // A null `entry` is an empty delivery.
    let parsed = parse_webhook(
        br#"{"object":"whatsapp_business_account","entry":null}"#,
        everyone,
    )
    .unwrap();
    assert_eq!(parsed, ParsedWebhook::default());
}

#[test]
fn an_unknown_interactive_kind_is_kept_raw_as_unknown() {
    let flow = json!({
        "from": "1", "id": "wamid.N", "timestamp": "1", "type": "interactive",
        "interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": "{}", "name": "flow"}}
    });
    let parsed = parse_webhook(&envelope(json!([flow.clone()])), everyone).unwrap();
    assert_eq!(
        parsed.messages[0].content,
        MessageContent::Unknown {
            type_name: "interactive.nfm_reply".into(),
            raw: flow
        }
    );
}

#[test]
fn a_batch_keeps_every_message_and_status_in_order_and_names_each_sender() {
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "A", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "PN-A"},
                "contacts": [
                    {"profile": {"name": "Ana"}, "wa_id": "111"},
                    {"profile": {"name": "Bo"}, "wa_id": "222"}
                ],
                "messages": [
                    {"from": "222", "id": "wamid.1", "timestamp": "10", "type": "text", "text": {"body": "one"}},
                    {"from": "111", "id": "wamid.2", "timestamp": "11", "type": "text", "text": {"body": "two"}},
                    {"from": "333", "id": "wamid.3", "timestamp": "12", "type": "text", "text": {"body": "three"}}
                ],
                "statuses": [
                    {"id": "wamid.out1", "status": "delivered", "timestamp": "13", "recipient_id": "111"},
                    {"id": "wamid.out2", "status": "deleted", "timestamp": "14", "recipient_id": "111"},
                    {"id": "wamid.out3", "status": "played", "timestamp": 15, "recipient_id": "111"}
                ]
            }}]},
            {"id": "B", "changes": [
                {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                {"field": "messages", "value": {
                    "metadata": {"phone_number_id": "PN-B"},
                    "messages": [{"from": "9", "id": "wamid.4", "timestamp": "16", "type": "text", "text": {"body": "four"}}]
                }},
                {"field": "messages", "value": {
                    "metadata": {"phone_number_id": "PN-UNKNOWN"},
                    "messages": [{"from": "9", "id": "wamid.5", "timestamp": "17", "type": "text", "text": {"body": "five"}}]
                }}
            ]}
        ]
    }))
    .unwrap();
    let route = |id: &str| match id {
        "PN-A" => Some(TenantId::parse("acme").unwrap()),
        "PN-B" => Some(TenantId::parse("bolt").unwrap()),
        _ => None,
    };
    let parsed = parse_webhook(&body, route).unwrap();
    let summary: Vec<_> = parsed
        .messages
        .iter()
        .map(|m| {
            (
                m.tenant.as_str(),
                m.text().unwrap(),
                m.sender_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("acme", "one", Some("Bo")),
            ("acme", "two", Some("Ana")),
            ("acme", "three", None),
            ("bolt", "four", None)
        ]
    );
    let statuses: Vec<_> = parsed
        .statuses
        .iter()
        .map(|s| (s.provider_message_id.as_str(), s.status, s.at_ms))
        .collect();
    assert_eq!(
        statuses,
        [
            ("wamid.out1", DeliveryStatus::Delivered, 13_000),
            ("wamid.out3", DeliveryStatus::Played, 15_000)
        ]
    );
    assert_eq!(parsed.unknown_statuses, 1);
    assert_eq!(parsed.ignored_changes, 1);
    assert_eq!(parsed.unroutable_changes, 1);
}

#[test]
fn change_level_errors_are_reported() {
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"changes": [{"field": "messages", "value": {
            "metadata": {"phone_number_id": "P"},
            "errors": [{"code": 131000, "title": "Something went wrong"}]
        }}]}]
    }))
    .unwrap();
    let parsed = parse_webhook(&body, everyone).unwrap();
    assert_eq!(
        parsed.errors,
        [ProviderError {
            code: 131000,
            title: Some("Something went wrong".into())
        }]
    );
}

#[test]
fn malformed_json_is_an_error_with_its_position() {
    let err = parse_webhook(
        br#"{"object": "whatsapp_business_account", "entry": [}"#,
        everyone,
    )
    .unwrap_err();
    assert!(
        matches!(err, WebhookParseError::Json { line: 1, column, .. } if column > 40),
        "{err:?}"
    );
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    let truncated = &fixture("meta_doc_text_message.json")[..300];
    assert!(matches!(
        parse_webhook(truncated, everyone),
        Err(WebhookParseError::Json { .. })
    ));
    assert!(matches!(
        parse_webhook(b"", everyone),
        Err(WebhookParseError::Json { .. })
    ));
}

#[test]
fn trailing_garbage_after_the_json_is_refused() {
    let mut body = fixture("pywa_signed_webhook_body.json");
    body.extend_from_slice(b" {}");
    assert!(matches!(
        parse_webhook(&body, everyone),
        Err(WebhookParseError::Json { .. })
    ));
}

#[test]
fn another_object_is_refused_with_a_clear_error() {
    let err = parse_webhook(
        br#"{"object": "instagram", "entry": [{"messaging": []}]}"#,
        everyone,
    )
    .unwrap_err();
    assert_eq!(
        err,
        WebhookParseError::WrongObject {
            object: "instagram".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "the webhook `object` is `instagram`, expected `whatsapp_business_account`"
    );
    let missing = parse_webhook(br#"{"entry": []}"#, everyone).unwrap_err();
    assert!(
        missing.to_string().contains("missing field `object`"),
        "{missing}"
    );
}

#[test]
fn a_wrong_shape_names_the_path_without_echoing_the_content() {
    let body = envelope(json!([
        {"from": "1", "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "fine"}},
        {"from": "1", "id": "wamid.2", "timestamp": "1", "type": "text", "text": {"body": ["my secret plan"]}}
    ]));
    let err = parse_webhook(&body, everyone).unwrap_err();
    assert_eq!(
        err,
        WebhookParseError::Shape {
            path: "entry[0].changes[0].value.messages[1].text.body".into(),
            detail: "invalid type: sequence, expected a string".into()
        }
    );
    let body = envelope(json!([
        {"from": "1", "id": "wamid.1", "timestamp": "my secret plan", "type": "text", "text": {"body": "x"}}
    ]));
    let err = parse_webhook(&body, everyone).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("entry[0].changes[0].value.messages[0].timestamp"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
    let body = envelope(
        json!([{"from": "1", "id": 7, "timestamp": "1", "type": "text", "text": {"body": "secret"}}]),
    );
    let shown = parse_webhook(&body, everyone).unwrap_err().to_string();
    assert!(
        shown.contains("messages[0].id") && shown.contains("integer"),
        "{shown}"
    );
    assert!(!shown.contains("`7`"), "{shown}");
}

#[test]
fn a_known_type_without_its_body_is_an_error_naming_the_message() {
    let body = envelope(json!([{"from": "1", "id": "wamid.1", "timestamp": "1", "type": "image"}]));
    assert_eq!(
        parse_webhook(&body, everyone).unwrap_err(),
        WebhookParseError::Shape {
            path: "entry[0].changes[0].value.messages[0]".into(),
            detail: "missing field `image`".into()
        }
    );
}

#[test]
fn a_messages_change_without_metadata_is_an_error() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[]}}]}]}"#;
    assert_eq!(
        parse_webhook(body, everyone).unwrap_err(),
        WebhookParseError::Shape {
            path: "entry[0].changes[0].value".into(),
            detail: "missing field `metadata`".into()
        }
    );
}

#[test]
fn a_three_megabyte_batch_parses_quickly() {
    let message = |i: usize| {
        json!({
            "from": format!("4917{i:08}"), "id": format!("wamid.{i:020}"), "timestamp": "1750000000",
            "type": "text", "text": {"body": "Hello, I would like to know more about the flat. ".repeat(4)}
        })
    };
    let mut body = envelope(json!((0..10_000).map(message).collect::<Vec<_>>()));
    while body.len() < 3 * 1024 * 1024 {
        let n = 3 * 1024 * 1024 / body.len() * 10_000 + 1_000;
        body = envelope(json!((0..n).map(message).collect::<Vec<_>>()));
    }
    let started = std::time::Instant::now();
    let parsed = parse_webhook(&body, everyone).unwrap();
    let took = started.elapsed();
    assert!(parsed.messages.len() > 10_000);
    assert_eq!(
        parsed.messages.last().unwrap().provider_message_id.as_str(),
        format!("wamid.{:020}", parsed.messages.len() - 1)
    );
    // Generous for an unoptimised build on a busy two-core machine; a release build takes a few
    // milliseconds.
    assert!(
        took < std::time::Duration::from_secs(3),
        "{} bytes took {took:?}",
        body.len()
    );
}
