//! The WhatsApp client against the local fake Graph API: the exact requests it sends (compared
//! with Meta's documented examples in tests/fixtures) and how it classifies Meta's failures.

use std::time::Duration;

use parley::channels::whatsapp::{
    InvalidRequest, ReplyButton, SendError, SendErrorKind, WhatsAppClient, WhatsAppCredentials,
};
use parley::domain::ProviderMessageId;
use parley::testkit::fake_graph::FakeGraph;
use secrecy::SecretString;
use serde_json::{Value, json};

const TOKEN: &str = "EAAG-test-access-token-do-not-leak";
const PHONE_NUMBER_ID: &str = "106540352242922";

fn creds() -> WhatsAppCredentials {
    WhatsAppCredentials {
        phone_number_id: PHONE_NUMBER_ID.to_owned(),
        access_token: SecretString::from(TOKEN),
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

async fn setup() -> (FakeGraph, WhatsAppClient) {
    let graph = FakeGraph::start().await.expect("fake Graph API starts");
    let client = WhatsAppClient::new(graph.base_url());
    (graph, client)
}

/// The set of keys at every level, so two bodies compare by shape, not by values.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn a_text_is_posted_with_the_bearer_token_and_metas_exact_json() {
    let (graph, client) = setup().await;
    let wamid = client
        .send_text(
            &creds(),
            "16505551234",
            "Does it come in another color?",
            None,
        )
        .await
        .unwrap();

    let sent = graph.wait_for_sent(1, Duration::from_secs(5)).await;
    let request = &sent[0];
    assert_eq!(request.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        request.body,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "text",
            "text": {"preview_url": false, "body": "Does it come in another color?"}
        })
    );
    assert_eq!(
        shape(&request.body),
        shape(&fixture("meta_doc_send_text_request.json"))
    );
    assert_eq!(Some(wamid.as_str()), request.wamid.as_deref());
    assert!(wamid.as_str().starts_with("wamid."));
}

#[tokio::test]
async fn each_send_gets_its_own_message_id() {
    let (graph, client) = setup().await;
    let a = client.send_text(&creds(), "1", "one", None).await.unwrap();
    let b = client.send_text(&creds(), "1", "two", None).await.unwrap();
    assert_ne!(a, b);
    let sent = graph.sent_messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body["text"]["body"], "two");
}

#[tokio::test]
async fn a_reply_carries_the_context_message_id() {
    let (graph, client) = setup().await;
    let original = ProviderMessageId::parse("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB=").unwrap();
    client
        .send_text(&creds(), "16505551234", "Yes, in blue.", Some(&original))
        .await
        .unwrap();
    let sent = graph.wait_for_sent(1, Duration::from_secs(5)).await;
    assert_eq!(
        sent[0].body["context"],
        json!({"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB="})
    );
}

#[tokio::test]
async fn reply_buttons_are_sent_as_metas_interactive_button_message() {
    let (graph, client) = setup().await;
    client
        .send_buttons(
            &creds(),
            "+16505551234",
            "Would you like to visit the flat?",
            &[
                ReplyButton::new("visit-yes", "Yes, book a visit"),
                ReplyButton::new("visit-later", "Later"),
            ],
            None,
        )
        .await
        .unwrap();
    let sent = graph.wait_for_sent(1, Duration::from_secs(5)).await;
    assert_eq!(
        sent[0].body,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+16505551234",
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Would you like to visit the flat?"},
                "action": {"buttons": [
                    {"type": "reply", "reply": {"id": "visit-yes", "title": "Yes, book a visit"}},
                    {"type": "reply", "reply": {"id": "visit-later", "title": "Later"}}
                ]}
            }
        })
    );
    // Meta's example has the same structure plus an optional header and footer.
    let mut documented = fixture("meta_doc_send_interactive_buttons_request.json");
    let interactive = documented["interactive"].as_object_mut().unwrap();
    interactive.remove("header");
    interactive.remove("footer");
    assert_eq!(shape(&sent[0].body), shape(&documented));
}

#[tokio::test]
async fn too_many_buttons_or_a_long_title_are_refused_before_anything_is_sent() {
    let (graph, client) = setup().await;
    let four: Vec<_> = (0..4)
        .map(|i| ReplyButton::new(format!("b{i}"), format!("Option {i}")))
        .collect();
    let err = client
        .send_buttons(&creds(), "1", "Pick one", &four, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        SendErrorKind::InvalidRequest(InvalidRequest::ButtonCount { count: 4, max: 3 })
    );
    let err = client
        .send_buttons(
            &creds(),
            "1",
            "Pick one",
            &[ReplyButton::new("a", "A title of 21 chars!!")],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind,
        SendErrorKind::InvalidRequest(InvalidRequest::ButtonTitleTooLong { chars: 21, .. })
    ));
    assert!(!err.is_retryable());
    assert!(graph.requests().is_empty());
}

#[tokio::test]
async fn a_text_over_4096_characters_is_refused_before_anything_is_sent() {
    let (graph, client) = setup().await;
    let err = client
        .send_text(&creds(), "1", &"x".repeat(4097), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        SendErrorKind::InvalidRequest(InvalidRequest::TextTooLong {
            chars: 4097,
            limit: 4096
        })
    );
    assert!(graph.requests().is_empty());
}

#[tokio::test]
async fn a_template_is_sent_with_name_language_and_components() {
    let (graph, client) = setup().await;
    let components = json!([{
        "type": "body",
        "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "Tuesday 10:00"}]
    }]);
    client
        .send_template(
            &creds(),
            "16505551234",
            "visit_reminder",
            "en_US",
            components.clone(),
        )
        .await
        .unwrap();
    let sent = graph.wait_for_sent(1, Duration::from_secs(5)).await;
    assert_eq!(
        sent[0].body,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "template",
            "template": {
                "name": "visit_reminder",
                "language": {"code": "en_US"},
                "components": components
            }
        })
    );
}

#[tokio::test]
async fn mark_read_with_typing_posts_metas_documented_body_and_is_not_a_send() {
    let (graph, client) = setup().await;
    let documented = fixture("meta_doc_mark_read_typing_request.json");
    let id = ProviderMessageId::parse(documented["message_id"].as_str().unwrap()).unwrap();
    client.mark_read(&creds(), &id, true).await.unwrap();
    client.mark_read(&creds(), &id, false).await.unwrap();

    let requests = graph.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, documented);
    assert_eq!(
        requests[1].body,
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": id.as_str()})
    );
    assert!(
        requests
            .iter()
            .all(|r| r.is_mark_read() && r.wamid.is_none())
    );
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(graph.sent_messages().is_empty());
}

/// Sends once with the fake scripted to fail with `code` and returns the error.
async fn send_failing_with(http_status: u16, code: i64) -> SendError {
    let (graph, client) = setup().await;
    graph.fail_next(1, http_status, code);
    let err = client
        .send_text(&creds(), "16505551234", "secret offer: 10% off", None)
        .await
        .unwrap_err();
    let attempts = graph.sent_messages();
    assert_eq!(attempts.len(), 1, "exactly one attempt");
    assert_eq!(attempts[0].wamid, None, "a refused send has no message id");
    err
}

#[tokio::test]
async fn throughput_and_pair_rate_limits_are_retryable() {
    for (status, code) in [(429, 130429), (400, 131056), (500, 131000)] {
        let err = send_failing_with(status, code).await;
        assert!(err.is_retryable(), "{code}: {err:?}");
        assert_eq!(err.code, Some(code));
        assert_eq!(err.http_status, Some(status));
    }
}

#[tokio::test]
async fn outside_the_24_hour_window_asks_for_a_template_and_is_not_retried() {
    let err = send_failing_with(400, 131047).await;
    assert_eq!(err.kind, SendErrorKind::OutsideWindow);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("template"), "{err}");
}

#[tokio::test]
async fn an_undeliverable_message_is_permanent() {
    let err = send_failing_with(400, 131026).await;
    assert_eq!(err.kind, SendErrorKind::Permanent);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn the_marketing_per_user_limit_is_not_retried_soon() {
    let err = send_failing_with(400, 131049).await;
    assert_eq!(err.kind, SendErrorKind::RateLimitedDoNotRetrySoon);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_expired_token_is_reported_as_auth_expired() {
    let err = send_failing_with(401, 190).await;
    assert_eq!(err.kind, SendErrorKind::AuthExpired);
    assert!(!err.is_retryable());
    assert_eq!(err.fbtrace_id.as_deref(), Some("AFakeGraphTrace000000"));
}

#[tokio::test]
async fn a_server_error_without_a_meta_code_is_retryable() {
    let (graph, client) = setup().await;
    graph.fail_next_with_body(1, 500, "<html><body>Internal Server Error</body></html>");
    let err = client
        .send_text(&creds(), "1", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::Retryable { retry_after: None });
    assert_eq!((err.code, err.http_status), (None, Some(500)));
}

#[tokio::test]
async fn a_scripted_failure_is_followed_by_a_normal_send() {
    let (graph, client) = setup().await;
    graph.fail_next(1, 429, 130429);
    assert!(client.send_text(&creds(), "1", "hi", None).await.is_err());
    let retried = client.send_text(&creds(), "1", "hi", None).await.unwrap();
    let sent = graph.wait_for_sent(2, Duration::from_secs(5)).await;
    assert_eq!(sent[0].body, sent[1].body);
    assert_eq!(sent[0].wamid, None);
    assert_eq!(sent[1].wamid.as_deref(), Some(retried.as_str()));
}

#[tokio::test]
async fn a_timeout_is_a_retryable_network_error_and_the_request_was_still_recorded() {
    let graph = FakeGraph::start().await.unwrap();
    let client = WhatsAppClient::with_timeout(graph.base_url(), Duration::from_millis(200));
    graph.set_delay(Duration::from_secs(2));
    let err = client
        .send_text(&creds(), "1", "hi", None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!((err.code, err.http_status), (None, None));
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(graph.requests().len(), 1);
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_like_meta_does() {
    let (graph, client) = setup().await;
    let no_token = WhatsAppCredentials {
        phone_number_id: PHONE_NUMBER_ID.to_owned(),
        access_token: SecretString::from(""),
    };
    let err = client
        .send_text(&no_token, "1", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::AuthExpired);
    assert_eq!(graph.requests().len(), 1);
}

#[tokio::test]
async fn no_send_error_shows_the_token_the_recipient_or_the_text() {
    let mut errors = Vec::new();
    for (status, code) in [(429, 130429), (400, 131047), (401, 190), (400, 131026)] {
        errors.push(send_failing_with(status, code).await);
    }
    let graph = FakeGraph::start().await.unwrap();
    let client = WhatsAppClient::with_timeout(graph.base_url(), Duration::from_millis(100));
    graph.set_delay(Duration::from_secs(1));
    errors.push(
        client
            .send_text(&creds(), "16505551234", "secret offer: 10% off", None)
            .await
            .unwrap_err(),
    );
    for err in errors {
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(TOKEN), "{shown}");
            assert!(!shown.contains("16505551234"), "{shown}");
            assert!(!shown.contains("secret offer"), "{shown}");
        }
    }
    // The credentials' Debug redacts the token as well.
    assert!(!format!("{:?}", creds()).contains(TOKEN));
}

#[tokio::test]
async fn wait_for_sent_panics_with_a_clear_message_when_sends_do_not_arrive() {
    let graph = FakeGraph::start().await.unwrap();
    let waiting = tokio::spawn(async move {
        graph.wait_for_sent(1, Duration::from_millis(50)).await;
    });
    let panic = waiting.await.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("waited") && message.contains("got 0"),
        "{message}"
    );
}

#[tokio::test]
async fn a_fake_graph_clone_keeps_serving_and_the_last_drop_stops_it() {
    let graph = FakeGraph::start().await.unwrap();
    let client = WhatsAppClient::with_timeout(graph.base_url(), Duration::from_secs(2));
    let clone = graph.clone();
    drop(graph);
    client
        .send_text(&creds(), "1", "still here", None)
        .await
        .unwrap();
    assert_eq!(clone.sent_messages().len(), 1, "clones share the record");

    drop(clone);
    // Graceful shutdown stops accepting at once; give the server task a moment to notice.
    let mut refused = None;
    for _ in 0..50 {
        match client.send_text(&creds(), "1", "gone", None).await {
            Err(err) => {
                refused = Some(err);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let err = refused.expect("the fake stopped after its last clone was dropped");
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.http_status, None);
}
