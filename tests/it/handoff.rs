//! Handoff to sales staff over HTTP: the bot steps aside on an explicit request, on frustration and
//! on a message it cannot place; the prospect hears their queue position; staff sign in, see the
//! queue, claim (one claim wins), reply through the gate and release; the bot stays quiet while a
//! person owns the conversation; an unclaimed handoff is escalated after its SLA.

use std::sync::Arc;
use std::time::Duration;

use parley::domain::ManualClock;
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_TOKEN, Backends, Spawn, TestApp, on_both_backends, whatsapp_conversation, whatsapp_texts,
};

on_both_backends!(
    a_request_for_a_person_is_queued_claimed_answered_and_released,
    a_question_behind_a_request_for_a_person_waits_for_the_person,
    two_claims_race_and_one_wins,
    a_lead_whose_budget_reaches_the_threshold_goes_to_a_person_once,
);

async fn say(app: &TestApp, wa_id: &str, wamid: &str, text: &str) {
    let response = app
        .post_whatsapp(&whatsapp_texts(wa_id, &[(wamid, text)]))
        .await;
    assert_eq!(response.status(), 200);
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a sales account with the admin token and signs it in; returns its session token.
async fn sales_session(app: &TestApp, email: &str) -> String {
    let (status, body) = call(
        app,
        "POST",
        "/api/v1/staff",
        ADMIN_TOKEN,
        Some(json!({"email": email, "name": "Priya", "role": "sales", "password": "a long enough password"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        app,
        "POST",
        "/api/v1/auth/login",
        "",
        Some(json!({"email": email, "password": "a long enough password"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn wait_for_handoffs(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = call(app, "GET", "/api/v1/handoffs", token, None).await;
        assert_eq!(status, 200, "{body}");
        let handoffs = body["handoffs"].as_array().unwrap().clone();
        if handoffs.len() >= n {
            return handoffs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} handoffs: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_question_behind_a_request_for_a_person_waits_for_the_person(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let wa = "919800001009";
    let conversation = whatsapp_conversation(wa);
    // Both arrive in one delivery, so one worker finds them pending together: the second must
    // see the handoff the first opened, not the conversation as it was before it.
    let response = app
        .post_whatsapp(&whatsapp_texts(
            wa,
            &[
                ("wamid.h.9a", "Can I talk to a human please?"),
                ("wamid.h.9b", "What is the price of a 3 BHK?"),
            ],
        ))
        .await;
    assert_eq!(response.status(), 200);
    let messages = crate::consent::wait_processed(&app, conversation.as_str(), 2).await;
    let sends = app.texts_sent_to(wa);
    assert_eq!(sends.len(), 1, "only the queue notice: {sends:?}");
    assert!(sends[0].contains("number 1 in the queue"), "{sends:?}");
    let bot_replies = messages
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .count();
    assert_eq!(bot_replies, 1, "{messages:#?}");
}

async fn a_request_for_a_person_is_queued_claimed_answered_and_released(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let token = sales_session(&app, "priya@skyline.example").await;
    let wa = "919800001001";
    let conversation = whatsapp_conversation(wa);
    say(&app, wa, "wamid.h.1", "Can I talk to a human please?").await;
    let sends = app.wait_for_texts_to(wa, 1).await;
    assert!(sends[0].contains("number 1 in the queue"), "{sends:?}");

    let handoffs = wait_for_handoffs(&app, &token, 1).await;
    let handoff = &handoffs[0];
    assert_eq!(handoff["reason"], "explicit_request");
    assert_eq!(handoff["position"], 1);
    assert_eq!(handoff["status"], "waiting");
    assert_eq!(handoff["conversation_id"], conversation.as_str());
    assert!(handoff["waiting_seconds"].is_number());
    let id = handoff["id"].as_str().unwrap().to_owned();

    // While it waits for a person the bot says nothing more.
    say(
        &app,
        wa,
        "wamid.h.2",
        "Hello? What is the price of a 3 BHK?",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.texts_sent_to(wa).len(), 1);

    // Replying before claiming is refused; claiming works; the reply reaches the prospect.
    let path = format!("/api/v1/handoffs/{id}");
    let (status, _) = call(
        &app,
        "POST",
        &format!("{path}/reply"),
        &token,
        Some(json!({"text": "Hi"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = call(&app, "POST", &format!("{path}/claim"), &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "claimed");
    let (status, body) = call(
        &app,
        "POST",
        &format!("{path}/reply"),
        &token,
        Some(
            json!({"text": "Hello, this is Priya. A 3 BHK at Skyline Meadows starts at 1.58 Cr."}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let sends = app.wait_for_texts_to(wa, 2).await;
    assert_eq!(
        sends[1],
        "Hello, this is Priya. A 3 BHK at Skyline Meadows starts at 1.58 Cr."
    );
    let staff_messages = app.messages(&conversation).await;
    assert!(staff_messages.iter().any(|m| m["author"] == "staff"));

    // Release: back to the bot, which answers again.
    let (status, body) = call(
        &app,
        "POST",
        &format!("{path}/release"),
        &token,
        Some(json!({"note": "sent prices"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "released");
    assert_eq!(body["release_note"], "sent prices");
    let (status, _) = call(&app, "POST", &format!("{path}/release"), &token, None).await;
    assert_eq!(status, 409, "already released");
    say(
        &app,
        wa,
        "wamid.h.3",
        "What amenities does Skyline Heights have?",
    )
    .await;
    app.wait_for_texts_to(wa, 3).await;
    let (_, body) = call(&app, "GET", "/api/v1/handoffs", &token, None).await;
    assert!(body["handoffs"].as_array().unwrap().is_empty());
}

async fn two_claims_race_and_one_wins(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let a = sales_session(&app, "a@skyline.example").await;
    let b = sales_session(&app, "b@skyline.example").await;
    let wa = "919800001101";
    say(&app, wa, "wamid.race.1", "I want to speak to a real person").await;
    let handoffs = wait_for_handoffs(&app, &a, 1).await;
    let id = handoffs[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/handoffs/{id}/claim");
    let (first, second) = tokio::join!(
        call(&app, "POST", &path, &a, None),
        call(&app, "POST", &path, &b, None)
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");
    let loser = if first.0 == 409 { &first.1 } else { &second.1 };
    assert_eq!(loser["error"], "already_claimed");
    // The one who lost cannot reply or release.
    let loser_token = if first.0 == 409 { &a } else { &b };
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/handoffs/{id}/reply"),
        loser_token,
        Some(json!({"text": "hi"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/handoffs/{id}/release"),
        loser_token,
        None,
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn staff_accounts_sign_in_and_roles_are_enforced() {
    let app = TestApp::embedded().await;
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/staff",
        ADMIN_TOKEN,
        Some(json!({"email": "m@skyline.example", "name": "Maya", "role": "marketer", "password": "short"})),
    )
    .await;
    assert_eq!(status, 400, "weak password: {body}");
    let (status, _) = call(
        &app,
        "POST",
        "/api/v1/staff",
        ADMIN_TOKEN,
        Some(json!({"email": "m@skyline.example", "name": "Maya", "role": "marketer", "password": "a long enough password"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &app,
        "POST",
        "/api/v1/staff",
        ADMIN_TOKEN,
        Some(json!({"email": "M@skyline.example", "name": "Maya", "role": "marketer", "password": "a long enough password"})),
    )
    .await;
    assert_eq!(status, 409, "emails are case-insensitive");
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        "",
        Some(json!({"email": "m@skyline.example", "password": "wrong password!"})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        "",
        Some(json!({"email": "nobody@skyline.example", "password": "whatever it is"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        "",
        Some(json!({"email": "m@skyline.example", "password": "a long enough password"})),
    )
    .await;
    assert_eq!(status, 200);
    let marketer = body["token"].as_str().unwrap().to_owned();
    assert!(
        !body.to_string().contains("argon2"),
        "no hash in the answer"
    );
    let (status, body) = call(&app, "GET", "/api/v1/auth/me", &marketer, None).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("marketer")));
    // A marketer cannot see the handoff queue nor create accounts.
    let (status, _) = call(&app, "GET", "/api/v1/handoffs", &marketer, None).await;
    assert_eq!(status, 403);
    let (status, _) = call(&app, "POST", "/api/v1/staff", &marketer, Some(json!({"email": "x@y.example", "name": "X", "role": "admin", "password": "a long enough password"}))).await;
    assert_eq!(status, 403);
    // Signing out ends the session.
    let (status, _) = call(&app, "POST", "/api/v1/auth/logout", &marketer, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, "GET", "/api/v1/auth/me", &marketer, None).await;
    assert_eq!(status, 401);
    let (status, _) = call(&app, "GET", "/api/v1/handoffs", "not-a-token", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn frustration_and_unplaceable_messages_hand_off_and_positions_are_told() {
    let app = TestApp::embedded().await;
    let token = sales_session(&app, "q@skyline.example").await;
    // Three prospects queue up: anger, gibberish the classifier cannot place, an explicit ask.
    say(
        &app,
        "919800001201",
        "wamid.q.1",
        "This is useless, nobody answers properly",
    )
    .await;
    app.wait_for_texts_to("919800001201", 1).await;
    say(&app, "919800001202", "wamid.q.2", "qwxz plmokn zzzt vvbq").await;
    app.wait_for_texts_to("919800001202", 1).await;
    say(&app, "919800001203", "wamid.q.3", "connect me to an agent").await;
    let third = app.wait_for_texts_to("919800001203", 1).await;
    assert!(third[0].contains("number 3 in the queue"), "{third:?}");
    let handoffs = wait_for_handoffs(&app, &token, 3).await;
    let reasons: Vec<&str> = handoffs
        .iter()
        .map(|h| h["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["frustration", "low_confidence", "explicit_request"]
    );
    let positions: Vec<i64> = handoffs
        .iter()
        .map(|h| h["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3]);
    // The first is claimed: the third moves to 2 (3 or better: worth telling), the second to 1.
    let first = handoffs[0]["id"].as_str().unwrap();
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/handoffs/{first}/claim"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let third = app.wait_for_texts_to("919800001203", 2).await;
    assert!(third[1].contains("number 2 in the queue"), "{third:?}");
    let second = app.wait_for_texts_to("919800001202", 2).await;
    assert!(second[1].contains("number 1 in the queue"), "{second:?}");
}

#[tokio::test]
async fn an_unclaimed_handoff_is_escalated_after_its_sla_and_the_prospect_told() {
    // Monday 2026-11-23 10:00 in Kolkata: business hours.
    let clock = ManualClock::new(
        "2026-11-23T04:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
    );
    let app = TestApp::start(
        Spawn::new(Backends::Embedded)
            .with_clock(Arc::new(clock.clone()))
            .with_env("PARLEY_HANDOFF_CHECK_MS", "50"),
    )
    .await;
    let token = sales_session(&app, "sla@skyline.example").await;
    let mut events = app
        .http
        .get(app.url("/api/v1/handoffs/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let wa = "919800001301";
    say(
        &app,
        wa,
        "wamid.sla.1",
        "please have a sales person call me",
    )
    .await;
    app.wait_for_texts_to(wa, 1).await;
    let handoffs = wait_for_handoffs(&app, &token, 1).await;
    assert_eq!(handoffs[0]["escalated"], false);
    assert_eq!(handoffs[0]["sla_due_at"], "2026-11-23T04:35:00Z");
    clock.advance_ms(4 * 60_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.texts_sent_to(wa).len(), 1, "not yet due");
    clock.advance_ms(2 * 60_000);
    let sends = app.wait_for_texts_to(wa, 2).await;
    assert!(sends[1].contains("Sorry for the wait"), "{sends:?}");
    let handoffs = wait_for_handoffs(&app, &token, 1).await;
    assert_eq!(handoffs[0]["escalated"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.texts_sent_to(wa).len(), 2, "escalated once");
    // The inbox stream saw it open and escalate.
    use futures::StreamExt;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(seen.contains("\"opened\"") && seen.contains("\"escalated\"")) {
        let chunk = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn after_hours_the_prospect_is_told_when_to_expect_an_answer() {
    // Sunday 2026-11-22 11:00 in Kolkata: closed until Monday 09:00.
    let clock = ManualClock::new(
        "2026-11-22T05:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
    );
    let app =
        TestApp::start(Spawn::new(Backends::Embedded).with_clock(Arc::new(clock.clone()))).await;
    let wa = "919800001401";
    say(&app, wa, "wamid.after.1", "can i talk to a human").await;
    let sends = app.wait_for_texts_to(wa, 1).await;
    assert!(sends[0].contains("at 09:00 on Monday"), "{sends:?}");
    let (_, body) = call(&app, "GET", "/api/v1/handoffs", ADMIN_TOKEN, None).await;
    assert_eq!(body["handoffs"][0]["sla_due_at"], "2026-11-23T03:35:00Z");
}

#[tokio::test]
async fn a_handoff_alerts_slack_and_the_signed_webhook_without_personal_data() {
    use parley::testkit::fake_crm::{FakeCrm, Service};
    let crm = FakeCrm::start().await.unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = TestApp::start(
        Spawn::new(Backends::Embedded)
            .with_env("SLACK_WEBHOOK_URL", &crm.slack_url())
            .with_env("CRM_WEBHOOK_URL", &crm.webhook_url())
            .with_env("CRM_WEBHOOK_SECRET", secret),
    )
    .await;
    let wa = "919800001501";
    say(
        &app,
        wa,
        "wamid.alert.1",
        "I need to speak with the manager",
    )
    .await;
    app.wait_for_texts_to(wa, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (slack, hook) = loop {
        let slack: Vec<_> = crm
            .accepted(Service::Slack)
            .into_iter()
            .filter(|r| r.raw_body.contains("Needs a person"))
            .collect();
        let hook: Vec<_> = crm
            .accepted(Service::Webhook)
            .into_iter()
            .filter(|r| r.body["type"] == "handoff.opened")
            .collect();
        if !slack.is_empty() && !hook.is_empty() {
            break (slack, hook);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alerts: {:#?}",
            crm.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(slack.len(), 1);
    assert!(slack[0].raw_body.contains("explicit_request"));
    assert!(!slack[0].raw_body.contains(wa), "no phone number in Slack");
    let event = &hook[0];
    assert_eq!(event.body["data"]["reason"], "explicit_request");
    assert!(
        !event.raw_body.contains(wa) && !event.raw_body.contains("manager"),
        "no number, no words"
    );
    let id = &event.webhook_headers["webhook-id"];
    let timestamp: i64 = event.webhook_headers["webhook-timestamp"].parse().unwrap();
    let key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        secret.trim_start_matches("whsec_"),
    )
    .unwrap();
    assert_eq!(
        event.webhook_headers["webhook-signature"],
        parley::crm::webhook::sign(&key, id, timestamp, event.raw_body.as_bytes())
    );
}

async fn a_lead_whose_budget_reaches_the_threshold_goes_to_a_person_once(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "[handoff]\nhigh_value_budget = 20000000\n").unwrap();
    let app =
        TestApp::start(Spawn::new(backends).with_env("PARLEY_CONFIG", config.to_str().unwrap()))
            .await;
    let token = sales_session(&app, "hv@skyline.example").await;

    // Below the threshold: the bot answers.
    let modest = "919800001301";
    say(
        &app,
        modest,
        "wamid.hv.1",
        "My budget is 1.2 crore, what is the price of a 2 BHK at Skyline Meadows?",
    )
    .await;
    let sends = app.wait_for_texts_to(modest, 1).await;
    assert!(sends[0].contains("₹1.12 Cr"), "{sends:?}");

    // At or above it: a person, at once, with the budget for staff.
    let big = "919800001302";
    say(
        &app,
        big,
        "wamid.hv.2",
        "We are looking at a 4 BHK at Skyline Heights, budget around 3.5 Cr. What is the price?",
    )
    .await;
    let sends = app.wait_for_texts_to(big, 1).await;
    assert!(sends[0].contains("in the queue"), "{sends:?}");
    let handoffs = wait_for_handoffs(&app, &token, 1).await;
    assert_eq!(handoffs.len(), 1, "{handoffs:?}");
    assert_eq!(handoffs[0]["reason"], "high_value_lead");
    assert_eq!(
        handoffs[0]["conversation_id"],
        whatsapp_conversation(big).as_str()
    );
    let detail = handoffs[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("INR 35000000"), "{detail}");

    // Released back to the bot, the lead's budget (now among its facts) does not hand off again.
    let id = handoffs[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/handoffs/{id}/claim"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/handoffs/{id}/release"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    say(
        &app,
        big,
        "wamid.hv.3",
        "What is the price of a 4 BHK at Skyline Heights?",
    )
    .await;
    let sends = app.wait_for_texts_to(big, 2).await;
    assert!(sends[1].contains("₹2.95 Cr"), "{sends:?}");
    let (_, body) = call(&app, "GET", "/api/v1/handoffs", &token, None).await;
    assert!(body["handoffs"].as_array().unwrap().is_empty(), "{body}");
}
