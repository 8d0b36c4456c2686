//! Consent end to end over HTTP: STOP/START/HELP on WhatsApp and the web channel, the one
//! confirmation, the gate refusing every other sender (bot, staff, automation), the 24-hour
//! window and templates, quiet hours in two time zones and frequency caps with an injected clock,
//! the consent API, the audit export and GDPR erasure.

use std::sync::Arc;
use std::time::Duration;

use parley::domain::{Channel, ContactId, ManualClock, TenantId};
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_TOKEN, Backends, Spawn, TestApp, on_both_backends, whatsapp_conversation, whatsapp_texts,
};

on_both_backends!(
    stop_confirms_once_and_silences_every_sender_until_start,
    stop_on_the_web_channel_is_confirmed_once_and_honoured,
    erasing_a_contact_keeps_the_opt_out,
);

fn contact_of(wa_id: &str) -> String {
    ContactId::derive(&TenantId::default_tenant(), Channel::Whatsapp, wa_id).to_string()
}

fn ms(iso: &str) -> i64 {
    iso.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn text_of(send: &Value) -> &str {
    send["text"]["body"].as_str().unwrap_or_default()
}

/// Waits until `n` inbound messages of the conversation are handled, then a little longer so
/// that anything the handling queued would have reached the sender.
pub(crate) async fn wait_processed(app: &TestApp, conversation: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let messages = app.messages(conversation).await;
        let handled = messages
            .iter()
            .filter(|m| m["direction"] == "inbound" && !m["intent"].is_null())
            .count();
        if handled >= n {
            tokio::time::sleep(Duration::from_millis(400)).await;
            return app.messages(conversation).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} handled messages; have {messages:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn say(app: &TestApp, wa_id: &str, wamid: &str, text: &str) {
    let response = app
        .post_whatsapp(&whatsapp_texts(wa_id, &[(wamid, text)]))
        .await;
    assert_eq!(response.status(), 200);
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn consent(app: &TestApp, contact: &str) -> Value {
    app.admin_get(&format!("/api/v1/contacts/{contact}/consent"))
        .await
}

fn actions(consent: &Value) -> Vec<(String, String)> {
    consent["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn stop_confirms_once_and_silences_every_sender_until_start(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let wa = "919800000101";
    let conversation = whatsapp_conversation(wa);

    say(&app, wa, "wamid.stop.1", "Hello").await;
    app.wait_for_sends_to(wa, 1).await;

    say(&app, wa, "wamid.stop.2", "STOP").await;
    let sends = app.wait_for_sends_to(wa, 2).await;
    let confirmation = text_of(&sends[1]);
    assert!(confirmation.contains("unsubscribed"), "{confirmation}");
    assert!(
        confirmation.contains("START"),
        "says how to opt back in: {confirmation}"
    );

    // A second STOP, a question, a staff message and an automation: nothing reaches the provider.
    say(&app, wa, "wamid.stop.3", "stop").await;
    say(&app, wa, "wamid.stop.4", "How much is a 3 BHK in Baner?").await;
    wait_processed(&app, &conversation, 4).await;
    let (status, refused) = post_json(
        &app,
        &format!("/api/v1/conversations/{conversation}/messages"),
        json!({"text": "Just following up on your enquiry!"}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"], "opted_out");
    let (status, refused) = post_json(
        &app,
        &format!("/api/v1/conversations/{conversation}/messages"),
        json!({"text": "New launch offer", "proactive": true, "author": "automation"}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        app.sends_to(wa).len(),
        2,
        "one confirmation and nothing else"
    );
    let messages = app.messages(&conversation).await;
    let blocked: Vec<&Value> = messages
        .iter()
        .filter(|m| m["status"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 2, "the refusals are recorded: {messages:#?}");
    assert!(blocked.iter().all(|m| m["gate_reason"] == "opted_out"));

    let contact = contact_of(wa);
    let state = consent(&app, &contact).await;
    assert_eq!(state["state"], "opted_out");
    assert_eq!(
        actions(&state),
        [("opt_out".to_owned(), "keyword".to_owned())]
    );
    assert!(
        state["history"][0]["proof"].is_string(),
        "the inbound message id is the proof"
    );

    say(&app, wa, "wamid.stop.5", "START").await;
    let sends = app.wait_for_sends_to(wa, 3).await;
    assert!(text_of(&sends[2]).contains("subscribed"), "{:?}", sends[2]);
    say(&app, wa, "wamid.stop.6", "What is the price of a 3 BHK?").await;
    app.wait_for_sends_to(wa, 4).await;
    let state = consent(&app, &contact).await;
    assert_eq!(state["state"], "opted_in");
    assert_eq!(
        actions(&state),
        [
            ("opt_out".to_owned(), "keyword".to_owned()),
            ("opt_in".to_owned(), "keyword".to_owned())
        ]
    );
}

async fn stop_on_the_web_channel_is_confirmed_once_and_honoured(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let visitor = "visitor-consent-01";
    let post = |text: &'static str| {
        let app = &app;
        async move {
            let response = app
                .http
                .post(app.url("/api/v1/web/messages"))
                .json(&json!({"visitor_id": visitor, "text": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            let body: Value = response.json().await.unwrap();
            body["conversation_id"].as_str().unwrap().to_owned()
        }
    };
    let conversation = post("Please stop messaging me").await;
    wait_processed(&app, &conversation, 1).await;
    post("STOP").await;
    post("Is parking included?").await;
    let messages = wait_processed(&app, &conversation, 3).await;
    let bot: Vec<&Value> = messages.iter().filter(|m| m["author"] == "bot").collect();
    assert_eq!(bot.len(), 1, "exactly one confirmation: {messages:#?}");
    assert_eq!(bot[0]["status"], "delivered");
    assert!(bot[0]["text"].as_str().unwrap().contains("unsubscribed"));
    // The visitor's own view shows the confirmation and nothing else.
    let visitor_view: Value = app
        .http
        .get(app.url(&format!(
            "/api/v1/conversations/{conversation}/messages?visitor_id={visitor}"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outbound: Vec<&Value> = visitor_view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .collect();
    assert_eq!(outbound.len(), 1);
    let contact = ContactId::derive(&TenantId::default_tenant(), Channel::Web, visitor);
    let state = consent(&app, &contact.to_string()).await;
    assert_eq!(state["state"], "opted_out");
    assert_eq!(
        actions(&state),
        [("opt_out".to_owned(), "phrase".to_owned())]
    );
}

async fn erasing_a_contact_keeps_the_opt_out(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let wa = "919800000301";
    let conversation = whatsapp_conversation(wa);
    say(&app, wa, "wamid.erase.1", "UNSUBSCRIBE").await;
    app.wait_for_sends_to(wa, 1).await;
    let contact = contact_of(wa);
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/contacts/{contact}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let gone = app
        .http
        .get(app.url(&format!("/api/v1/conversations/{conversation}/messages")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.status(),
        404,
        "the conversation and its messages are erased"
    );
    let state = consent(&app, &contact).await;
    assert_eq!(state["erased"], true);
    assert_eq!(
        actions(&state),
        [("opt_out".to_owned(), "keyword".to_owned())]
    );
    // They write again: a new contact row with the same id, still opted out, and no reply.
    say(&app, wa, "wamid.erase.2", "Hello again").await;
    wait_processed(&app, &conversation, 1).await;
    assert_eq!(app.sends_to(wa).len(), 1, "only the original confirmation");
    let again = app
        .http
        .delete(app.url(&format!("/api/v1/contacts/{}", contact_of("919800000399"))))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn near_misses_are_answered_and_plain_requests_opt_out() {
    let app = TestApp::embedded().await;
    let wa = "919800000401";
    let conversation = whatsapp_conversation(wa);
    say(&app, wa, "wamid.near.1", "Stop by the office tomorrow?").await;
    say(&app, wa, "wamid.near.2", "When does the launch offer end?").await;
    wait_processed(&app, &conversation, 2).await;
    // The first near-miss is a message the bot cannot place, so it goes to a person (the one
    // send is the queue notice) and the bot stays quiet for the second; neither is an opt-out.
    let sends = app.wait_for_sends_to(wa, 1).await;
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert!(text_of(&sends[0]).contains("in the queue"), "{sends:#?}");
    let state = consent(&app, &contact_of(wa)).await;
    assert_eq!(state["state"], "no_record");
    // A plain request to stop is an opt-out even while a person owns the conversation.
    say(&app, wa, "wamid.near.3", "Don't text me again").await;
    let sends = app.wait_for_sends_to(wa, 2).await;
    assert!(text_of(&sends[1]).contains("unsubscribed"), "{sends:#?}");
    let state = consent(&app, &contact_of(wa)).await;
    assert_eq!(state["state"], "opted_out");
}

#[tokio::test]
async fn help_is_answered_and_recorded() {
    let app = TestApp::embedded().await;
    let wa = "919800000501";
    say(&app, wa, "wamid.help.1", "HELP").await;
    let sends = app.wait_for_sends_to(wa, 1).await;
    assert!(text_of(&sends[0]).contains("Reply STOP"), "{:?}", sends[0]);
    let state = consent(&app, &contact_of(wa)).await;
    assert_eq!(actions(&state), [("help".to_owned(), "keyword".to_owned())]);
    assert_eq!(state["state"], "no_record", "help changes no consent");
}

#[tokio::test]
async fn consent_from_another_source_is_recorded_with_its_proof() {
    let app = TestApp::embedded().await;
    let wa = "919800000601";
    let conversation = whatsapp_conversation(wa);
    say(&app, wa, "wamid.api.1", "Hi").await;
    app.wait_for_sends_to(wa, 1).await;
    let contact = contact_of(wa);
    let path = format!("/api/v1/contacts/{contact}/consent");
    let (status, body) =
        post_json(&app, &path, json!({"action": "opt_out", "source": "form"})).await;
    assert_eq!(status, 400, "proof is required: {body}");
    let (status, body) = post_json(
        &app,
        &path,
        json!({"action": "opt_out", "source": "keyword", "proof": "x"}),
    )
    .await;
    assert_eq!(status, 400, "keyword is not an API source: {body}");
    let (status, _) = post_json(
        &app,
        &format!("/api/v1/contacts/{}/consent", contact_of("919800000699")),
        json!({"action": "opt_out", "source": "form", "proof": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = post_json(
        &app,
        &path,
        json!({"action": "opt_out", "source": "form", "proof": "unsubscribe form submission 8812"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    say(&app, wa, "wamid.api.2", "Hi again, any offers?").await;
    wait_processed(&app, &conversation, 2).await;
    assert_eq!(
        app.sends_to(wa).len(),
        1,
        "no reply after the recorded opt-out"
    );
    let state = consent(&app, &contact).await;
    assert_eq!(
        state["history"][0]["proof"],
        "unsubscribe form submission 8812"
    );
    assert_eq!(state["history"][0]["source"], "form");

    // The audit export has it, as CSV.
    let response = app
        .http
        .get(app.url("/api/v1/consent/export?since=2000-01-01T00:00:00Z"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("event_id,tenant,subject,contact_id,channel,action,source,proof"));
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(&contact) && lines[1].contains(",opt_out,form,"));
    assert!(!csv.contains(wa), "the export carries no phone number");
    let future = app
        .admin_get_text("/api/v1/consent/export?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(future.lines().count(), 1, "only the header");
    let bad = app
        .http
        .get(app.url("/api/v1/consent/export?since=yesterday"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let anonymous = app
        .http
        .get(app.url("/api/v1/consent/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

fn config_with_template(app_dir: &std::path::Path) -> String {
    let path = app_dir.join("parley.toml");
    std::fs::write(
        &path,
        r#"
[tenants.default.templates.visit_reminder]
language = "en"
body = "Hi {{1}}, a reminder about your visit to {{2}}."
"#,
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_24_hour_window_needs_a_template_and_caps_hold_proactive_messages() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(ms("2026-11-22T06:00:00Z")); // 11:30 in Kolkata
    let app = TestApp::start(
        Spawn::new(Backends::Embedded)
            .with_clock(Arc::new(clock.clone()))
            .with_env("PARLEY_CONFIG", &config_with_template(dir.path())),
    )
    .await;
    let wa = "919800000701";
    let conversation = whatsapp_conversation(wa);
    let path = format!("/api/v1/conversations/{conversation}/messages");
    say(&app, wa, "wamid.window.1", "Hi").await;
    app.wait_for_sends_to(wa, 1).await;

    // Within the window a staff reply is a reply: sent at once.
    let (status, body) =
        post_json(&app, &path, json!({"text": "Hello from Priya at Skyline"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["purpose"], "reply");
    app.wait_for_sends_to(wa, 2).await;

    clock.advance_ms(25 * 60 * 60 * 1000);
    let (status, body) = post_json(&app, &path, json!({"text": "Are you still interested?"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "outside_service_window");
    let (status, body) = post_json(&app, &path, json!({"template": {"name": "nope"}})).await;
    assert_eq!(status, 400, "unknown template: {body}");
    let (status, body) = post_json(
        &app,
        &path,
        json!({"template": {"name": "visit_reminder", "params": ["Asha"]}}),
    )
    .await;
    assert_eq!(status, 400, "wrong parameter count: {body}");
    let (status, body) = post_json(
        &app,
        &path,
        json!({"template": {"name": "visit_reminder", "params": ["Asha", "Skyline Meadows"]}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["purpose"], "proactive");
    let sends = app.wait_for_sends_to(wa, 3).await;
    assert_eq!(sends[2]["type"], "template");
    assert_eq!(sends[2]["template"]["name"], "visit_reminder");
    assert_eq!(sends[2]["template"]["language"]["code"], "en");
    assert_eq!(
        sends[2]["template"]["components"][0]["parameters"][1]["text"],
        "Skyline Meadows"
    );

    // WhatsApp allows one proactive message a week by default.
    let (status, body) = post_json(
        &app,
        &path,
        json!({"template": {"name": "visit_reminder", "params": ["Asha", "Skyline Heights"]}}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "frequency_cap");
    clock.advance_ms(8 * 24 * 60 * 60 * 1000);
    let (status, body) = post_json(
        &app,
        &path,
        json!({"template": {"name": "visit_reminder", "params": ["Asha", "Skyline Heights"]}}),
    )
    .await;
    assert_eq!(status, 202, "a week later the cap has room again: {body}");
    app.wait_for_sends_to(wa, 4).await;
}

#[tokio::test]
async fn quiet_hours_defer_proactive_messages_in_the_contacts_time_zone() {
    // 16:00 UTC: 21:30 in Kolkata (quiet), 16:00 in London (not quiet).
    let clock = ManualClock::new(ms("2026-11-22T16:00:00Z"));
    let app =
        TestApp::start(Spawn::new(Backends::Embedded).with_clock(Arc::new(clock.clone()))).await;
    let india = "919800000801";
    let uk = "447700900801";
    say(
        &app,
        india,
        "wamid.quiet.1",
        "Hi, what projects do you have?",
    )
    .await;
    say(&app, uk, "wamid.quiet.2", "Hi, what projects do you have?").await;
    // Replies to a message just sent are never held by quiet hours.
    app.wait_for_sends_to(india, 1).await;
    app.wait_for_sends_to(uk, 1).await;

    let follow_up = json!({"text": "Our new tower launches this weekend", "proactive": true});
    let (status, body) = post_json(
        &app,
        &format!(
            "/api/v1/conversations/{}/messages",
            whatsapp_conversation(india)
        ),
        follow_up.clone(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "deferred");
    assert_eq!(body["reason"], "quiet_hours");
    assert_eq!(
        body["deliver_after"], "2026-11-23T03:30:00Z",
        "09:00 in Kolkata"
    );
    let (status, body) = post_json(
        &app,
        &format!(
            "/api/v1/conversations/{}/messages",
            whatsapp_conversation(uk)
        ),
        follow_up,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    app.wait_for_sends_to(uk, 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.sends_to(india).len(), 1, "held through the night");

    clock.set_ms(ms("2026-11-23T03:31:00Z"));
    let sends = app.wait_for_sends_to(india, 2).await;
    assert_eq!(text_of(&sends[1]), "Our new tower launches this weekend");

    // A contact's own time zone wins over the one its number suggests.
    let response = app
        .http
        .patch(app.url(&format!("/api/v1/contacts/{}", contact_of(uk))))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"time_zone": "Mars/Olympus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .http
        .patch(app.url(&format!("/api/v1/contacts/{}", contact_of(uk))))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"time_zone": "Asia/Tokyo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // 03:31 UTC is 12:31 in Tokyo: not quiet, but the weekly cap is used up.
    let (status, body) = post_json(
        &app,
        &format!(
            "/api/v1/conversations/{}/messages",
            whatsapp_conversation(uk)
        ),
        json!({"text": "One more thing", "proactive": true}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "frequency_cap");
}
