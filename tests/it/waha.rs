//! WAHA end to end: signed `message` events in (every fixture), the HMAC enforced, the business's
//! own messages and other events ignored, redeliveries deduplicated, the bot's reply captured by
//! the fake WAHA, and `session.status` shown by `/readyz`.

use std::time::Duration;

use parley::channels::waha::sign;
use parley::domain::{Channel, ContactId, ConversationId, TenantId};
use serde_json::{Value, json};

use crate::harness::{Backends, Spawn, TestApp, WAHA_API_KEY, WAHA_HMAC_KEY};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn post_signed(app: &TestApp, body: &[u8], signature: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/webhooks/waha"))
        .header("content-type", "application/json")
        .header("x-webhook-hmac-algorithm", "sha512")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-webhook-hmac", signature);
    }
    request.send().await.unwrap()
}

async fn post(app: &TestApp, body: &[u8]) -> reqwest::Response {
    post_signed(app, body, Some(&sign(WAHA_HMAC_KEY.as_bytes(), body))).await
}

fn conversation_of(number: &str) -> String {
    ConversationId::derive(&TenantId::default_tenant(), Channel::Waha, number).to_string()
}

fn text_event(id: &str, from: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_{id}"),
        "timestamp": 1_700_000_000_000_i64,
        "event": "message",
        "session": "default",
        "engine": "WEBJS",
        "payload": {"id": id, "timestamp": 1_700_000_000, "from": from, "fromMe": false, "body": body, "hasMedia": false}
    }))
    .unwrap()
}

async fn stored_messages(app: &TestApp, conversation: &str) -> usize {
    let id = ConversationId::parse(conversation).unwrap();
    app.state.store.list_messages(id, 100).await.unwrap().len()
}

#[tokio::test]
async fn every_waha_message_fixture_is_accepted_and_inbound_ones_recorded() {
    let app = TestApp::embedded().await;
    for name in [
        "waha_doc_message_text.json",
        "waha_doc_message_image_media.json",
        "waha_doc_message_document.json",
        "waha_doc_message_reply_to.json",
        "waha_doc_message_reaction.json",
        "waha_doc_session_status.json",
    ] {
        assert_eq!(post(&app, &fixture(name)).await.status(), 200, "{name}");
    }
    // The three fixtures share one id (a documentation placeholder): the first recorded wins,
    // the text one is the business's own (`fromMe`) and is not recorded at all.
    let messages = app.messages(&conversation_of("11111111111")).await;
    let inbound: Vec<&Value> = messages
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .collect();
    assert_eq!(inbound.len(), 1, "{messages:#?}");
    assert_eq!(inbound[0]["kind"], "image");
}

#[tokio::test]
async fn a_tampered_body_or_missing_hmac_is_refused_and_nothing_recorded() {
    let app = TestApp::embedded().await;
    let body = text_event("false_15550101@c.us_AAA1", "15550101@c.us", "Hello");
    let signature = sign(WAHA_HMAC_KEY.as_bytes(), &body);
    let tampered = text_event("false_15550101@c.us_AAA1", "15550101@c.us", "Hellx");
    assert_eq!(
        post_signed(&app, &tampered, Some(&signature))
            .await
            .status(),
        401
    );
    assert_eq!(post_signed(&app, &body, None).await.status(), 401);
    assert_eq!(
        post_signed(&app, &body, Some("not-hex")).await.status(),
        401
    );
    assert_eq!(stored_messages(&app, &conversation_of("15550101")).await, 0);
    let response = post(&app, b"{not json").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn both_chat_id_forms_are_one_conversation_and_redelivery_is_deduplicated() {
    let app = TestApp::embedded().await;
    let first = text_event("false_15550102@c.us_AAA2", "15550102@c.us", "Hi");
    assert_eq!(post(&app, &first).await.status(), 200);
    assert_eq!(post(&app, &first).await.status(), 200);
    let second = text_event(
        "false_15550102@c.us_AAA3",
        "15550102@s.whatsapp.net",
        "Are you there?",
    );
    assert_eq!(post(&app, &second).await.status(), 200);
    let conversation = conversation_of("15550102");
    app.wait_for_bot_messages(&conversation, 2).await;
    let messages = app.messages(&conversation).await;
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count(),
        2,
        "{messages:#?}"
    );
}

async fn round_trip(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let body = text_event(
        "false_15550103@c.us_AAA4",
        "15550103@c.us",
        "How much does a 2 bedroom flat cost?",
    );
    assert_eq!(post(&app, &body).await.status(), 200);
    let sent = app
        .fakes
        .waha
        .wait_for_sent(1, Duration::from_secs(20))
        .await;
    let request = &sent[0];
    assert_eq!(request.api_key.as_deref(), Some(WAHA_API_KEY));
    assert_eq!(request.body["session"], "default");
    assert_eq!(request.body["chatId"], "15550103@c.us");
    let conversation = conversation_of("15550103");
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(request.body["text"], bot[0]["text"]);
    assert_eq!(bot[0]["status"], "sent");
    // The same keys as WAHA's documented request.
    let documented: Value =
        serde_json::from_slice(&fixture("waha_doc_sendText_request.json")).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&request.body), keys(&documented));
}

#[tokio::test]
async fn a_waha_message_is_answered_through_send_text() {
    round_trip(Backends::Embedded).await;
}

#[tokio::test]
async fn the_waha_round_trip_works_on_postgres_and_redis() {
    let Some(backends) = Backends::servers() else {
        return;
    };
    round_trip(backends).await;
}

#[tokio::test]
async fn a_waha_outage_is_retried() {
    let app = TestApp::embedded().await;
    app.fakes.waha.fail_next(1, 503);
    let body = text_event("false_15550104@c.us_AAA5", "15550104@c.us", "Hello?");
    assert_eq!(post(&app, &body).await.status(), 200);
    let sent = app
        .fakes
        .waha
        .wait_for_sent(2, Duration::from_secs(20))
        .await;
    assert!(sent[0].id.is_none() && sent[1].id.is_some());
}

#[tokio::test]
async fn stop_through_waha_reaches_the_ledger() {
    let app = TestApp::embedded().await;
    let body = text_event("false_15550105@c.us_AAA6", "15550105@c.us", "STOP");
    assert_eq!(post(&app, &body).await.status(), 200);
    let contact = ContactId::derive(&TenantId::default_tenant(), Channel::Waha, "15550105");
    app.wait_for_consent(&contact.to_string(), "opted_out")
        .await;
}

#[tokio::test]
async fn a_failed_session_shows_in_readyz_until_it_works_again() {
    let app = TestApp::embedded().await;
    let readyz = |app: &TestApp| {
        let request = app.http.get(app.url("/readyz"));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                200,
                "WAHA does not make the replica unready"
            );
            response.json::<Value>().await.unwrap()
        }
    };
    let body = readyz(&app).await;
    assert_eq!(body["checks"]["waha"]["status"], "ok");

    let failed =
        json!({"event": "session.status", "session": "default", "payload": {"status": "FAILED"}});
    assert_eq!(
        post(&app, &serde_json::to_vec(&failed).unwrap())
            .await
            .status(),
        200
    );
    let body = readyz(&app).await;
    assert_eq!(body["checks"]["waha"]["status"], "unavailable", "{body:#}");
    assert_eq!(body["checks"]["waha"]["sessions"][0]["status"], "FAILED");

    assert_eq!(
        post(&app, &fixture("waha_doc_session_status.json"))
            .await
            .status(),
        200
    );
    let body = readyz(&app).await;
    assert_eq!(body["checks"]["waha"]["status"], "ok", "{body:#}");
    assert_eq!(body["checks"]["waha"]["sessions"][0]["status"], "WORKING");
}
