//! Email end to end: every provider fixture accepted (Mailgun signed, SendGrid and Postmark
//! behind their secret path or basic auth), signatures, freshness and replays enforced, the
//! RFC 5322 thread landing in one conversation, redeliveries deduplicated, replies captured by
//! the SMTP sink with their thread headers, one-click unsubscribe reaching the ledger, and STOP.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use mail_parser::MessageParser;
use parley::domain::{Channel, ContactId, ConversationId, ManualClock, TenantId};
use parley::testkit::capture;
use parley::testkit::smtp_sink::ReceivedMail;
use serde_json::Value;
use sha2::Sha256;

use crate::harness::{
    Backends, EMAIL_WEBHOOK_PASSWORD, EMAIL_WEBHOOK_SECRET, EMAIL_WEBHOOK_USER,
    MAILGUN_SIGNING_KEY, PUBLIC_URL, Spawn, TestApp,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn conversation_of(thread: &str) -> ConversationId {
    ConversationId::derive(&TenantId::default_tenant(), Channel::Email, thread)
}

/// A multipart/form-data body of text fields.
fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "parley-test-boundary-7d1f";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

async fn post(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn sendgrid_path() -> String {
    format!("/webhooks/email/sendgrid/{EMAIL_WEBHOOK_SECRET}")
}

/// Posts a raw RFC 5322 message the way SendGrid's raw mode does.
async fn post_raw(app: &TestApp, raw: &str) -> reqwest::Response {
    let (content_type, body) = multipart(&[("email", raw), ("to", "hello@skyline.example")]);
    post(app, &sendgrid_path(), &content_type, body).await
}

fn mailgun_signature(timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(MAILGUN_SIGNING_KEY.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A Mailgun route post signed now, with a fresh token.
fn mailgun_post(
    app: &TestApp,
    from: &str,
    message_id: &str,
    references: &str,
    subject: &str,
    text: &str,
) -> (String, Vec<u8>) {
    let timestamp = (app.state.clock.now_ms() / 1000).to_string();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let signature = mailgun_signature(&timestamp, &token);
    let in_reply_to = references.split_whitespace().last().unwrap_or("");
    multipart(&[
        ("recipient", "hello@skyline.example"),
        ("sender", from),
        ("from", from),
        ("subject", subject),
        ("body-plain", text),
        ("Message-Id", message_id),
        ("In-Reply-To", in_reply_to),
        ("References", references),
        ("timestamp", &timestamp),
        ("token", &token),
        ("signature", &signature),
    ])
}

async fn inbound_count(app: &TestApp, conversation: ConversationId) -> usize {
    app.state
        .store
        .list_messages(conversation, 100)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.direction == parley::domain::Direction::Inbound)
        .count()
}

fn parts(mail: &ReceivedMail) -> (String, String) {
    let message = MessageParser::default()
        .parse(mail.data.as_bytes())
        .expect("the sink received a parseable message");
    (
        message.body_text(0).unwrap_or_default().into_owned(),
        message.body_html(0).unwrap_or_default().into_owned(),
    )
}

#[tokio::test]
async fn the_mailgun_fixture_verifies_at_its_own_time_and_keeps_attachment_metadata() {
    let clock = Arc::new(ManualClock::new(1_366_071_615_000 + 20_000));
    let app = TestApp::start(Spawn::new(Backends::Embedded).with_clock(clock)).await;
    let raw = fixture("mailgun_route_parsed_multipart_multimail.txt");
    let (headers, body) = capture::split(&raw);
    let content_type = capture::header(&headers, "content-type")
        .unwrap()
        .to_owned();
    let response = post(
        &app,
        "/webhooks/email/mailgun",
        &content_type,
        body.to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let conversation = conversation_of("E102015D-F580-4316-81FA-7324838A3AE8@opennorth.ca");
    let messages = app.messages(&conversation.to_string()).await;
    let text = messages[0]["text"].as_str().unwrap();
    assert_eq!(
        text, "bold text\n\n\n\nsome more bold text\n\n\n\nsome italic text",
        "Mailgun's stripped-text is used, line ends normalised"
    );
    let email = app
        .state
        .store
        .latest_inbound_email(conversation)
        .await
        .unwrap()
        .unwrap();
    let attachments: Value = serde_json::from_str(&email.attachments).unwrap();
    let names: Vec<&str> = attachments
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["foo.txt", "bar.txt"]);
    assert!(attachments[0]["size"].as_u64().unwrap() > 0);

    // The same post again is a replay: refused, and nothing new is recorded.
    let response = post(
        &app,
        "/webhooks/email/mailgun",
        &content_type,
        body.to_vec(),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(inbound_count(&app, conversation).await, 1);
}

#[tokio::test]
async fn a_stale_or_forged_mailgun_post_is_refused_and_nothing_recorded() {
    let app = TestApp::embedded().await;
    // The real capture, signed in 2013: stale today.
    let raw = fixture("mailgun_route_parsed_multipart_multimail.txt");
    let (headers, body) = capture::split(&raw);
    let content_type = capture::header(&headers, "content-type")
        .unwrap()
        .to_owned();
    let response = post(
        &app,
        "/webhooks/email/mailgun",
        &content_type,
        body.to_vec(),
    )
    .await;
    assert_eq!(response.status(), 401);
    let conversation = conversation_of("E102015D-F580-4316-81FA-7324838A3AE8@opennorth.ca");
    assert_eq!(inbound_count(&app, conversation).await, 0);

    // Fresh, but signed with another key.
    let (content_type, body) = mailgun_post(
        &app,
        "jane@example.com",
        "<forged-1@example.com>",
        "",
        "Hello",
        "Hi",
    );
    let forged = String::from_utf8(body)
        .unwrap()
        .replace("name=\"signature\"\r\n\r\n", "name=\"signature\"\r\n\r\n0");
    let response = post(
        &app,
        "/webhooks/email/mailgun",
        &content_type,
        forged.into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        inbound_count(&app, conversation_of("forged-1@example.com")).await,
        0
    );
}

#[tokio::test]
async fn sendgrid_and_postmark_need_their_secret_path_or_basic_auth() {
    let app = TestApp::embedded().await;
    let raw = fixture("sendgrid_inbound_parse_multipart_multimail.txt");
    let (headers, body) = capture::split(&raw);
    let content_type = capture::header(&headers, "content-type")
        .unwrap()
        .to_owned();
    for path in [
        "/webhooks/email/sendgrid".to_owned(),
        "/webhooks/email/sendgrid/wrong-secret".to_owned(),
    ] {
        let response = post(&app, &path, &content_type, body.to_vec()).await;
        assert_eq!(response.status(), 401, "{path}");
    }
    let postmark = fixture("postmark_inbound_mvdnbrk.json");
    let response = app
        .http
        .post(app.url("/webhooks/email/postmark"))
        .basic_auth(EMAIL_WEBHOOK_USER, Some("wrong"))
        .json(&serde_json::from_slice::<Value>(&postmark).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        inbound_count(&app, conversation_of("test-message-id@mail.example.com")).await,
        0
    );
    let response = post(&app, "/webhooks/email/gmail", "text/plain", b"x".to_vec()).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn every_sendgrid_and_postmark_fixture_is_accepted_with_its_reply_text() {
    let app = TestApp::embedded().await;
    let raw = fixture("sendgrid_inbound_parse_multipart_multimail.txt");
    let (headers, body) = capture::split(&raw);
    let content_type = capture::header(&headers, "content-type")
        .unwrap()
        .to_owned();
    let response = post(&app, &sendgrid_path(), &content_type, body.to_vec()).await;
    assert_eq!(response.status(), 200);
    let conversation = conversation_of("D0AB77C1-A89D-4D9E-A207-5E20A6D36BEF@opennorth.ca");
    let messages = app.messages(&conversation.to_string()).await;
    let text = messages[0]["text"].as_str().unwrap();
    assert!(text.ends_with("some italic text"), "{text}");
    assert!(
        !text.contains("quoted") && !text.contains("Signature"),
        "{text}"
    );
    let email = app
        .state
        .store
        .latest_inbound_email(conversation)
        .await
        .unwrap()
        .unwrap();
    let attachments: Value = serde_json::from_str(&email.attachments).unwrap();
    assert!(attachments.as_array().unwrap().len() >= 2, "{attachments}");

    for (name, thread, expected) in [
        (
            "postmark_inbound_mvdnbrk.json",
            "test-message-id@mail.example.com",
            "Okay, thank you for testing this inbound message!",
        ),
        (
            "postmark_inbound_http_multimail.txt",
            "26ECCA85-47DE-4E66-827A-B35E34874F26@opennorth.ca",
            "bold text",
        ),
    ] {
        let raw = fixture(name);
        let body = if name.ends_with(".txt") {
            capture::split(&raw).1.to_vec()
        } else {
            raw
        };
        let response = app
            .http
            .post(app.url("/webhooks/email/postmark"))
            .basic_auth(EMAIL_WEBHOOK_USER, Some(EMAIL_WEBHOOK_PASSWORD))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let messages = app.messages(&conversation_of(thread).to_string()).await;
        assert!(
            messages[0]["text"].as_str().unwrap().starts_with(expected),
            "{name}: {messages:#?}"
        );
    }
    let response = app
        .http
        .post(app.url("/webhooks/email/postmark"))
        .basic_auth(EMAIL_WEBHOOK_USER, Some(EMAIL_WEBHOOK_PASSWORD))
        .header("content-type", "application/json")
        .body("{\"not\": \"postmark\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_three_rfc_5322_messages_form_one_conversation() {
    let app = TestApp::embedded().await;
    for name in [
        "email_rfc5322_A2_1_original.eml",
        "email_rfc5322_A2_2_reply.eml",
        "email_rfc5322_A2_3_reply_to_reply.eml",
    ] {
        let raw = String::from_utf8(fixture(name)).unwrap();
        assert_eq!(post_raw(&app, &raw).await.status(), 200, "{name}");
    }
    let conversation = conversation_of("1234@local.machine.example");
    assert_eq!(inbound_count(&app, conversation).await, 3);
    let conversations = app.admin_get("/api/v1/conversations").await;
    let email: Vec<&Value> = conversations["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["channel"] == "email")
        .collect();
    assert_eq!(email.len(), 1, "{conversations:#}");
}

#[tokio::test]
async fn a_redelivered_email_is_recorded_once() {
    let app = TestApp::embedded().await;
    let postmark = fixture("postmark_inbound_mvdnbrk.json");
    for _ in 0..2 {
        let response = app
            .http
            .post(app.url(&format!("/webhooks/email/postmark/{EMAIL_WEBHOOK_SECRET}")))
            .header("content-type", "application/json")
            .body(postmark.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Mailgun redelivers with a new token but the same Message-ID.
    for _ in 0..2 {
        let (content_type, body) = mailgun_post(
            &app,
            "jane@example.com",
            "<dup-1@example.com>",
            "",
            "Hello",
            "Hi",
        );
        let response = post(&app, "/webhooks/email/mailgun", &content_type, body).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        inbound_count(&app, conversation_of("test-message-id@mail.example.com")).await,
        1
    );
    assert_eq!(
        inbound_count(&app, conversation_of("dup-1@example.com")).await,
        1
    );
}

async fn round_trip(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let prospect = "asha@example.com";
    let (content_type, body) = mailgun_post(
        &app,
        "Asha Rao <asha@example.com>",
        "<q1@example.com>",
        "",
        "Flats in Baner",
        "What is the price of a 2 BHK at Skyline Meadows?\n\nSent from my iPhone",
    );
    let response = post(&app, "/webhooks/email/mailgun", &content_type, body).await;
    assert_eq!(response.status(), 200);
    let conversation = conversation_of("q1@example.com");
    let mails = app.fakes.smtp.wait_for(1, Duration::from_secs(20)).await;
    let reply = &mails[0];
    assert_eq!(reply.rcpt_to, [prospect]);
    assert_eq!(reply.mail_from, "hello@skyline.example");
    assert_eq!(
        reply.header("In-Reply-To").as_deref(),
        Some("<q1@example.com>")
    );
    assert_eq!(
        reply.header("References").as_deref(),
        Some("<q1@example.com>")
    );
    assert_eq!(
        reply.header("Subject").as_deref(),
        Some("Re: Flats in Baner")
    );
    let reply_to = reply.header("Reply-To").unwrap();
    assert!(
        reply_to.contains(&format!(
            "hello+{}@skyline.example",
            conversation.0.simple()
        )),
        "{reply_to}"
    );
    let unsubscribe = reply.header("List-Unsubscribe").unwrap();
    assert!(
        unsubscribe.starts_with(&format!("<{PUBLIC_URL}/unsubscribe/")),
        "{unsubscribe}"
    );
    assert_eq!(
        reply.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let (text, html) = parts(reply);
    let bot = app
        .wait_for_bot_messages(&conversation.to_string(), 1)
        .await;
    let bot_text = bot[0]["text"].as_str().unwrap();
    // SMTP bodies end lines with CRLF.
    assert!(
        text.replace("\r\n", "\n").starts_with(bot_text.trim()),
        "{text:?} vs {bot_text:?}"
    );
    assert!(
        html.contains("<p>") && html.contains("Unsubscribe"),
        "{html}"
    );
    let our_id = reply.header("Message-ID").unwrap();

    // The prospect answers Parley's reply: same conversation, and the next reply's References
    // carry the whole chain.
    let references = format!("<q1@example.com> {our_id}");
    let (content_type, body) = mailgun_post(
        &app,
        prospect,
        "<q2@example.com>",
        &references,
        "Re: Flats in Baner",
        "Can I visit on Saturday?\n\nOn Mon, Skyline Habitat wrote:\n> earlier text",
    );
    assert_eq!(
        post(&app, "/webhooks/email/mailgun", &content_type, body)
            .await
            .status(),
        200
    );
    let mails = app.fakes.smtp.wait_for(2, Duration::from_secs(20)).await;
    let second = &mails[1];
    assert_eq!(
        second.header("In-Reply-To").as_deref(),
        Some("<q2@example.com>")
    );
    assert_eq!(
        second.header("References"),
        Some(format!("<q1@example.com> {our_id} <q2@example.com>"))
    );
    assert_eq!(inbound_count(&app, conversation).await, 2);
    let messages = app.messages(&conversation.to_string()).await;
    assert!(
        messages
            .iter()
            .any(|m| m["text"] == "Can I visit on Saturday?"),
        "quoted history stripped: {messages:#?}"
    );

    // A fresh email (no thread headers) to the Reply-To plus-address joins the conversation.
    let timestamp = (app.state.clock.now_ms() / 1000).to_string();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let signature = mailgun_signature(&timestamp, &token);
    let (content_type, body) = multipart(&[
        (
            "recipient",
            &format!("hello+{}@skyline.example", conversation.0.simple()),
        ),
        ("from", prospect),
        ("subject", "One more thing"),
        ("body-plain", "Is parking included?"),
        ("Message-Id", "<q3@example.com>"),
        ("timestamp", &timestamp),
        ("token", &token),
        ("signature", &signature),
    ]);
    assert_eq!(
        post(&app, "/webhooks/email/mailgun", &content_type, body)
            .await
            .status(),
        200
    );
    app.fakes.smtp.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(inbound_count(&app, conversation).await, 3);

    // One-click unsubscribe (RFC 8058) records the opt-out; the confirmation page and a forged
    // token behave.
    let path = unsubscribe
        .trim_matches(['<', '>'])
        .strip_prefix(PUBLIC_URL)
        .unwrap()
        .to_owned();
    let page = app.http.get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    let response = app
        .http
        .post(app.url(&path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let contact = ContactId::derive(&TenantId::default_tenant(), Channel::Email, prospect);
    let consent = app
        .admin_get(&format!("/api/v1/contacts/{contact}/consent"))
        .await;
    assert_eq!(consent["state"], "opted_out", "{consent:#}");
    assert_eq!(consent["history"][0]["source"], "unsubscribe_link");
    let forged = format!(
        "/unsubscribe/default.{}.{}",
        uuid::Uuid::new_v4().simple(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8; 16])
    );
    let response = app.http.post(app.url(&forged)).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // Opted out: a further email gets no reply.
    let (content_type, body) = mailgun_post(
        &app,
        prospect,
        "<q4@example.com>",
        &references,
        "Re: Flats in Baner",
        "Hello again?",
    );
    assert_eq!(
        post(&app, "/webhooks/email/mailgun", &content_type, body)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        app.fakes.smtp.received().len(),
        3,
        "nothing after the opt-out"
    );
}

#[tokio::test]
async fn an_email_is_answered_by_smtp_in_its_thread_and_unsubscribe_works() {
    round_trip(Backends::Embedded).await;
}

#[tokio::test]
async fn the_email_round_trip_works_on_postgres_and_redis() {
    let Some(backends) = Backends::servers() else {
        return;
    };
    round_trip(backends).await;
}

#[tokio::test]
async fn a_deferred_smtp_send_is_retried() {
    let app = TestApp::embedded().await;
    app.fakes.smtp.fail_next(1, "451 4.3.0 try again later");
    let (content_type, body) = mailgun_post(
        &app,
        "ravi@example.com",
        "<r1@example.com>",
        "",
        "Hi",
        "Do you have parking?",
    );
    assert_eq!(
        post(&app, "/webhooks/email/mailgun", &content_type, body)
            .await
            .status(),
        200
    );
    let mails = app.fakes.smtp.wait_for(2, Duration::from_secs(20)).await;
    assert!(!mails[0].accepted && mails[1].accepted);
    assert_eq!(
        mails[0].header("Message-ID"),
        mails[1].header("Message-ID"),
        "a retry repeats the Message-ID"
    );
}

#[tokio::test]
async fn stop_by_email_reaches_the_ledger() {
    let app = TestApp::embedded().await;
    let (content_type, body) = mailgun_post(
        &app,
        "meera@example.com",
        "<s1@example.com>",
        "",
        "unsubscribe",
        "STOP\n\n-- \nMeera",
    );
    assert_eq!(
        post(&app, "/webhooks/email/mailgun", &content_type, body)
            .await
            .status(),
        200
    );
    let contact = ContactId::derive(
        &TenantId::default_tenant(),
        Channel::Email,
        "meera@example.com",
    );
    let consent = app
        .wait_for_consent(&contact.to_string(), "opted_out")
        .await;
    assert_eq!(consent["history"][0]["source"], "keyword");
}

#[tokio::test]
async fn erasing_an_email_contact_removes_its_threading_records() {
    let app = TestApp::embedded().await;
    let (content_type, body) = mailgun_post(
        &app,
        "lena@example.com",
        "<e1@example.com>",
        "",
        "Private subject",
        "Hello",
    );
    assert_eq!(
        post(&app, "/webhooks/email/mailgun", &content_type, body)
            .await
            .status(),
        200
    );
    let conversation = conversation_of("e1@example.com");
    app.wait_for_bot_messages(&conversation.to_string(), 1)
        .await;
    assert!(
        app.state
            .store
            .latest_inbound_email(conversation)
            .await
            .unwrap()
            .is_some()
    );
    let contact = ContactId::derive(
        &TenantId::default_tenant(),
        Channel::Email,
        "lena@example.com",
    );
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/contacts/{contact}")))
        .bearer_auth(crate::harness::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert!(
        app.state
            .store
            .latest_inbound_email(conversation)
            .await
            .unwrap()
            .is_none(),
        "the subject and ids are gone with the contact"
    );
}
