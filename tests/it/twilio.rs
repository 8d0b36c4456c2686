//! Twilio end to end: signed form webhooks in (every fixture), signatures enforced, redeliveries
//! deduplicated, the bot's reply captured by the fake Messages API, status callbacks, Twilio's
//! error 63016 and rate limits, and an SMS STOP reaching the consent ledger.

use std::time::Duration;

use parley::channels::twilio::sign_form;
use parley::domain::{Channel, ContactId, ConversationId, TenantId};
use serde_json::Value;

use crate::harness::{
    Backends, Spawn, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_NUMBER, TWILIO_WEBHOOK_URL,
    TestApp,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn params_of(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn encode(params: &[(String, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

/// Posts `body` signed for `url` (what Twilio does when it is configured with `url`).
async fn post_signed_for(app: &TestApp, url: &str, body: &[u8]) -> reqwest::Response {
    let signature = sign_form(TWILIO_AUTH_TOKEN.as_bytes(), url, &params_of(body));
    post_with_signature(app, body, &signature).await
}

async fn post_with_signature(app: &TestApp, body: &[u8], signature: &str) -> reqwest::Response {
    app.http
        .post(app.url("/webhooks/twilio"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, body: &[u8]) -> reqwest::Response {
    post_signed_for(app, TWILIO_WEBHOOK_URL, body).await
}

fn conversation_of(address: &str) -> String {
    ConversationId::derive(&TenantId::default_tenant(), Channel::Twilio, address).to_string()
}

fn contact_of(address: &str) -> String {
    ContactId::derive(&TenantId::default_tenant(), Channel::Twilio, address).to_string()
}

async fn stored_messages(app: &TestApp, conversation: &str) -> usize {
    let id = ConversationId::parse(conversation).unwrap();
    app.state.store.list_messages(id, 100).await.unwrap().len()
}

fn text_message(sid: &str, from: &str, body: &str) -> Vec<u8> {
    encode(
        &[
            ("MessageSid", sid),
            ("SmsMessageSid", sid),
            ("AccountSid", TWILIO_ACCOUNT_SID),
            ("From", from),
            ("To", &format!("whatsapp:{TWILIO_NUMBER}")),
            ("Body", body),
            ("NumMedia", "0"),
            ("ProfileName", "Asha"),
            ("SmsStatus", "received"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

#[tokio::test]
async fn every_twilio_fixture_is_accepted_and_recorded_under_its_sender() {
    let app = TestApp::start(Spawn::new(Backends::Embedded)).await;
    for (name, sender) in [
        (
            "twilio_whatsapp_inbound_text_chatsaude.txt",
            "whatsapp:+558282136275",
        ),
        (
            "twilio_whatsapp_inbound_text_covidbot.txt",
            "whatsapp:+27726961505",
        ),
        (
            "twilio_whatsapp_inbound_image_covidbot.txt",
            "whatsapp:+27726961505",
        ),
        ("twilio_sms_inbound_stop_optouttype_gist.txt", "+1234567890"),
    ] {
        let response = post(&app, &fixture(name)).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "text/xml",
            "{name}: answered with TwiML"
        );
        let messages = app.messages(&conversation_of(sender)).await;
        assert!(
            messages.iter().any(|m| m["direction"] == "inbound"),
            "{name}: {messages:#?}"
        );
    }
    let image = app
        .messages(&conversation_of("whatsapp:+27726961505"))
        .await;
    assert!(image.iter().any(|m| m["kind"] == "image"), "{image:#?}");
}

#[tokio::test]
async fn a_signature_for_the_url_with_its_default_port_is_accepted() {
    let app = TestApp::embedded().await;
    let body = text_message(
        "SM00000000000000000000000000000a01",
        "whatsapp:+15550001",
        "Hi",
    );
    let response = post_signed_for(
        &app,
        "https://parley.example.com:443/webhooks/twilio",
        &body,
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_tampered_body_a_wrong_url_or_no_signature_is_refused_and_nothing_recorded() {
    let app = TestApp::embedded().await;
    let from = "whatsapp:+15550002";
    let body = text_message("SM00000000000000000000000000000a02", from, "Original text");
    let signature = sign_form(
        TWILIO_AUTH_TOKEN.as_bytes(),
        TWILIO_WEBHOOK_URL,
        &params_of(&body),
    );
    let tampered = text_message("SM00000000000000000000000000000a02", from, "Changed text");
    let response = post_with_signature(&app, &tampered, &signature).await;
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unauthorized");

    let response =
        post_signed_for(&app, "https://attacker.example.com/webhooks/twilio", &body).await;
    assert_eq!(response.status(), 401);
    let response = app
        .http
        .post(app.url("/webhooks/twilio"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    assert_eq!(stored_messages(&app, &conversation_of(from)).await, 0);
    assert!(app.fakes.twilio.requests().is_empty());
}

#[tokio::test]
async fn a_redelivered_message_is_recorded_and_answered_once() {
    let app = TestApp::embedded().await;
    let from = "whatsapp:+15550003";
    let body = text_message("SM00000000000000000000000000000a03", from, "Hello there");
    for _ in 0..3 {
        assert_eq!(post(&app, &body).await.status(), 200);
    }
    let conversation = conversation_of(from);
    app.wait_for_bot_messages(&conversation, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = app.messages(&conversation).await;
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count(),
        1
    );
    assert_eq!(app.fakes.twilio.requests().len(), 1, "one reply");
}

async fn round_trip(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let from = "whatsapp:+15550004";
    let conversation = conversation_of(from);
    let body = text_message(
        "SM00000000000000000000000000000a04",
        from,
        "How much does a 2 bedroom flat cost?",
    );
    assert_eq!(post(&app, &body).await.status(), 200);

    let sent = app
        .fakes
        .twilio
        .wait_for_sent(1, Duration::from_secs(20))
        .await;
    let request = &sent[0];
    assert_eq!(request.account_sid, TWILIO_ACCOUNT_SID);
    assert_eq!(
        request.basic_auth,
        Some((TWILIO_ACCOUNT_SID.to_owned(), TWILIO_AUTH_TOKEN.to_owned()))
    );
    assert_eq!(request.param("To"), Some(from));
    assert_eq!(
        request.param("From"),
        Some(format!("whatsapp:{TWILIO_NUMBER}").as_str())
    );
    assert_eq!(request.param("StatusCallback"), Some(TWILIO_WEBHOOK_URL));
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(request.param("Body"), bot[0]["text"].as_str());
    assert_eq!(bot[0]["status"], "sent");

    // Twilio reports delivery to the status callback.
    let sid = request.sid.clone().unwrap();
    let callback = encode(
        &[
            ("MessageSid", sid.as_str()),
            ("MessageStatus", "delivered"),
            ("SmsStatus", "delivered"),
            ("AccountSid", TWILIO_ACCOUNT_SID),
            ("From", &format!("whatsapp:{TWILIO_NUMBER}")),
            ("To", from),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    assert_eq!(post(&app, &callback).await.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = app.messages(&conversation).await;
        if messages
            .iter()
            .any(|m| m["author"] == "bot" && m["status"] == "delivered")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered: {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_whatsapp_message_is_answered_through_the_messages_api_and_delivery_is_recorded() {
    round_trip(Backends::Embedded).await;
}

#[tokio::test]
async fn the_twilio_round_trip_works_on_postgres_and_redis() {
    let Some(backends) = Backends::servers() else {
        return;
    };
    round_trip(backends).await;
}

#[tokio::test]
async fn error_63016_outside_the_window_fails_the_reply_at_once_with_its_code() {
    let app = TestApp::embedded().await;
    app.fakes.twilio.fail_next(1, 400, 63016, None);
    let from = "whatsapp:+15550005";
    let conversation = conversation_of(from);
    let body = text_message("SM00000000000000000000000000000a05", from, "Hello?");
    assert_eq!(post(&app, &body).await.status(), 200);
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(bot[0]["status"], "failed");
    assert_eq!(bot[0]["error_code"], 63016);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.fakes.twilio.requests().len(), 1, "never retried");
}

#[tokio::test]
async fn a_failed_status_callback_with_63016_marks_the_reply_failed() {
    let app = TestApp::embedded().await;
    let from = "whatsapp:+15550006";
    let conversation = conversation_of(from);
    let body = text_message("SM00000000000000000000000000000a06", from, "Hi");
    assert_eq!(post(&app, &body).await.status(), 200);
    let sent = app
        .fakes
        .twilio
        .wait_for_sent(1, Duration::from_secs(20))
        .await;
    app.wait_for_bot_messages(&conversation, 1).await;
    let callback = encode(
        &[
            ("MessageSid", sent[0].sid.as_deref().unwrap()),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "63016"),
            ("From", &format!("whatsapp:{TWILIO_NUMBER}")),
            ("To", from),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    assert_eq!(post(&app, &callback).await.status(), 200);
    let messages = app.messages(&conversation).await;
    let bot = messages.iter().find(|m| m["author"] == "bot").unwrap();
    assert_eq!(bot["status"], "failed");
    assert_eq!(bot["error_code"], 63016);
}

#[tokio::test]
async fn a_rate_limited_send_is_retried_after_twilios_retry_after() {
    let app = TestApp::embedded().await;
    app.fakes.twilio.fail_next(1, 429, 20429, Some(1));
    let from = "+15550007";
    let conversation = conversation_of(from);
    let body = encode(
        &[
            ("MessageSid", "SM00000000000000000000000000000a07"),
            ("From", from),
            ("To", TWILIO_NUMBER),
            ("Body", "Do you have parking?"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    assert_eq!(post(&app, &body).await.status(), 200);
    let sent = app
        .fakes
        .twilio
        .wait_for_sent(2, Duration::from_secs(20))
        .await;
    assert!(sent[0].sid.is_none() && sent[1].sid.is_some());
    assert_eq!(
        sent[1].param("From"),
        Some(TWILIO_NUMBER),
        "SMS answers from the plain number"
    );
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(bot[0]["status"], "sent");
}

#[tokio::test]
async fn an_sms_stop_with_opt_out_type_reaches_the_consent_ledger() {
    let app = TestApp::embedded().await;
    let body = fixture("twilio_sms_inbound_stop_optouttype_gist.txt");
    assert_eq!(post(&app, &body).await.status(), 200);
    let sender = "+1234567890";
    let contact = contact_of(sender);
    let consent = app.wait_for_consent(&contact, "opted_out").await;
    let history = consent["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{consent:#}");
    assert_eq!(history[0]["source"], "provider");
    assert_eq!(history[0]["proof"], "SMXXXXXXXXX");
    // Twilio sends its own confirmation: Parley records the STOP and sends nothing; a
    // redelivery changes nothing.
    let conversation = conversation_of(sender);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .messages(&conversation)
        .await
        .iter()
        .any(|m| m["direction"] == "inbound" && m["intent"].is_null())
    {
        assert!(tokio::time::Instant::now() < deadline, "never processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post(&app, &body).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.fakes.twilio.requests().is_empty());
    let consent = app.wait_for_consent(&contact, "opted_out").await;
    assert_eq!(consent["history"].as_array().unwrap().len(), 1);
}
