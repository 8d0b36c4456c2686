//! The gateway end to end: WhatsApp webhooks and the web channel in, durable processing, replies
//! out through the fake Graph API. The core behaviours run on embedded backends and on
//! PostgreSQL + Redis.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::harness::{
    APP_SECRET, Backends, PHONE_NUMBER_ID, Spawn, TestApp, VERIFY_TOKEN, on_both_backends,
    whatsapp_conversation, whatsapp_texts,
};

on_both_backends!(
    a_text_message_gets_exactly_one_reply_through_the_graph_api,
    five_deliveries_of_one_message_give_one_reply,
    messages_of_one_conversation_are_answered_in_order,
    a_crash_between_recording_and_processing_loses_nothing_and_duplicates_nothing,
    the_web_channel_answers_through_messages_and_server_sent_events,
    delivery_statuses_move_the_reply_forward,
    messages_handled_together_are_marked_read_once_through_the_newest,
);

async fn a_text_message_gets_exactly_one_reply_through_the_graph_api(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let response = app
        .post_whatsapp(&whatsapp_texts(
            "919800000001",
            &[("wamid.one", "What is the price of a 2 BHK?")],
        ))
        .await;
    assert_eq!(response.status(), 200);
    let sent = app.graph.wait_for_sent(1, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 1);
    let request = &sent[0];
    assert_eq!(request.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(
        request.authorization.as_deref(),
        Some("Bearer test-access-token")
    );
    assert_eq!(request.body["to"], "919800000001");
    assert_eq!(request.body["type"], "text");
    assert_eq!(request.body["messaging_product"], "whatsapp");
    let text = request.body["text"]["body"].as_str().unwrap();
    assert!(text.contains("₹1.12 Cr"), "a pricing reply: {text}");

    let conversation = whatsapp_conversation("919800000001");
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(bot[0]["status"], "sent");
    let all = app.messages(&conversation).await;
    let inbound = all.iter().find(|m| m["direction"] == "inbound").unwrap();
    assert_eq!(inbound["author"], "prospect");
    assert_eq!(inbound["intent"], "pricing");
    // Nothing else arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.graph.sent_messages().len(), 1);
}

async fn five_deliveries_of_one_message_give_one_reply(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let body = whatsapp_texts("919800000002", &[("wamid.dup", "hello")]);
    let mut deliveries = Vec::new();
    for _ in 0..5 {
        deliveries.push(app.post_whatsapp(&body));
    }
    for response in futures::future::join_all(deliveries).await {
        assert_eq!(response.status(), 200);
    }
    // And once more after the reply went out.
    app.graph.wait_for_sent(1, Duration::from_secs(20)).await;
    assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.graph.sent_messages().len(), 1);
    let conversation = whatsapp_conversation("919800000002");
    let messages = app.messages(&conversation).await;
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count(),
        1
    );
    assert_eq!(messages.iter().filter(|m| m["author"] == "bot").count(), 1);
}

async fn messages_of_one_conversation_are_answered_in_order(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    // Two deliveries racing for one prospect, and a second prospect in parallel.
    let first = whatsapp_texts("919800000003", &[("wamid.o1", "hi there")]);
    let second = whatsapp_texts(
        "919800000003",
        &[("wamid.o2", "I want to book a site visit")],
    );
    let other = whatsapp_texts("919800000004", &[("wamid.o3", "price of 3 bhk?")]);
    assert_eq!(app.post_whatsapp(&first).await.status(), 200);
    let (a, b) = tokio::join!(app.post_whatsapp(&second), app.post_whatsapp(&other));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let sent = app.graph.wait_for_sent(3, Duration::from_secs(20)).await;
    let to_first: Vec<&str> = sent
        .iter()
        .filter(|r| r.body["to"] == "919800000003")
        .map(|r| r.body["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(to_first.len(), 2);
    assert!(
        to_first[0].starts_with("Hi"),
        "greeting answered first: {to_first:?}"
    );
    assert!(
        to_first[1].contains("visit"),
        "then the visit: {to_first:?}"
    );
}

async fn messages_handled_together_are_marked_read_once_through_the_newest(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    // One delivery with three messages from one prospect: a worker takes them as one page.
    let delivery = whatsapp_texts(
        "919800000005",
        &[
            ("wamid.p1", "hello"),
            ("wamid.p2", "what is the price of a 2 BHK?"),
            ("wamid.p3", "and is there parking?"),
        ],
    );
    assert_eq!(app.post_whatsapp(&delivery).await.status(), 200);
    let sent = app.graph.wait_for_sent(3, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 3, "one reply per message");
    let mark_reads: Vec<Value> = app
        .graph
        .requests()
        .into_iter()
        .filter(|r| r.is_mark_read())
        .map(|r| r.body["message_id"].clone())
        .collect();
    // Marking the newest read marks the earlier ones too, as WhatsApp shows them.
    assert_eq!(mark_reads, vec![Value::from("wamid.p3")]);
}

async fn a_crash_between_recording_and_processing_loses_nothing_and_duplicates_nothing(
    backends: Backends,
) {
    // Workers off: messages are recorded and acknowledged, then the process "dies".
    let mut spawn = Spawn::new(backends);
    spawn.background_tasks = false;
    let app = TestApp::start(spawn).await;
    for i in 0..5 {
        let body = whatsapp_texts(
            &format!("91980000010{i}"),
            &[(&format!("wamid.crash{i}"), "hello")],
        );
        assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    }
    assert!(app.graph.sent_messages().is_empty());
    let app = app.crash_and_restart(true).await;
    let sent = app.graph.wait_for_sent(5, Duration::from_secs(20)).await;
    let mut recipients: Vec<String> = sent
        .iter()
        .map(|r| r.body["to"].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 5);
    // A redelivery after the restart is still a duplicate, and a second crash sends nothing again.
    let again = whatsapp_texts("919800000100", &[("wamid.crash0", "hello")]);
    assert_eq!(app.post_whatsapp(&again).await.status(), 200);
    let app = app.crash_and_restart(true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.graph.sent_messages().len(), 5);
}

async fn the_web_channel_answers_through_messages_and_server_sent_events(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    let visitor = "visitor-0123456789";
    let conversation = parley::domain::ConversationId::derive(
        &parley::domain::TenantId::default_tenant(),
        parley::domain::Channel::Web,
        visitor,
    )
    .to_string();
    // Listen first, as the widget does.
    let events = app
        .http
        .get(app.url(&format!(
            "/api/v1/conversations/{conversation}/events?visitor_id={visitor}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = eventsource_stream::Eventsource::eventsource(events.bytes_stream());

    let response = app
        .http
        .post(app.url("/api/v1/web/messages"))
        .json(&serde_json::json!({"tenant": "default", "visitor_id": visitor, "text": "Can I visit the sample flat on Sunday?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["conversation_id"], conversation);

    let reply = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.next().await {
            let event = event.unwrap();
            let message: Value = serde_json::from_str(&event.data).unwrap();
            if event.event == "message" && message["author"] == "bot" {
                return message;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("a bot reply arrives as an event");
    assert!(reply["text"].as_str().unwrap().contains("visit"), "{reply}");

    // The visitor can read their conversation; another visitor id cannot.
    let mine = app
        .http
        .get(app.url(&format!(
            "/api/v1/conversations/{conversation}/messages?visitor_id={visitor}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    let mine: Value = mine.json().await.unwrap();
    assert!(mine["messages"].as_array().unwrap().len() >= 2);
    let theirs = app
        .http
        .get(app.url(&format!(
            "/api/v1/conversations/{conversation}/messages?visitor_id=someone-else-123"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 401);
}

async fn delivery_statuses_move_the_reply_forward(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    app.post_whatsapp(&whatsapp_texts("919800000005", &[("wamid.st", "hello")]))
        .await;
    let sent = app.graph.wait_for_sent(1, Duration::from_secs(20)).await;
    let wamid = sent[0].wamid.clone().unwrap();
    let conversation = whatsapp_conversation("919800000005");
    app.wait_for_bot_messages(&conversation, 1).await;
    let status = |s: &str, extra: &str| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{wamid}","status":"{s}","timestamp":"1700000100","recipient_id":"919800000005"{extra}}}]}}}}]}}]}}"#
        )
    };
    // read before delivered (out of order), then a repeat of delivered.
    for body in [
        status("read", ""),
        status("delivered", ""),
        status("delivered", ""),
    ] {
        assert_eq!(app.post_whatsapp(body.as_bytes()).await.status(), 200);
    }
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(bot[0]["status"], "read");
}

#[tokio::test]
async fn the_verification_handshake_echoes_the_challenge_exactly() {
    let app = TestApp::embedded().await;
    let ok = app
        .http
        .get(app.url(&format!(
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = app
        .http
        .get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
}

#[tokio::test]
async fn a_tampered_body_or_wrong_secret_is_refused_and_records_nothing() {
    let app = TestApp::embedded().await;
    let body = whatsapp_texts("919800000006", &[("wamid.t", "hello")]);
    let signature = parley::channels::whatsapp::sign(APP_SECRET.as_bytes(), &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'h').unwrap();
    tampered[at] = b'j';
    let wrong_secret = parley::channels::whatsapp::sign(b"not-the-secret", &body);
    for (payload, sig) in [
        (&tampered, signature.as_str()),
        (&body, wrong_secret.as_str()),
        (&body, "sha256=zz"),
    ] {
        let response = app.post_whatsapp_signed(payload, sig).await;
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "unauthorized");
        assert!(
            error["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
    }
    let unsigned = app
        .http
        .post(app.url("/webhooks/whatsapp"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let conversations = app.admin_get("/api/v1/conversations").await;
    assert_eq!(conversations["conversations"].as_array().unwrap().len(), 0);
    assert!(app.graph.sent_messages().is_empty());
}

#[tokio::test]
async fn the_real_meta_signature_vector_is_accepted() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let vector: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{fixtures}vector_meta_x_hub_signature_256.json"))
            .unwrap(),
    )
    .unwrap();
    let body = std::fs::read(format!("{fixtures}pywa_signed_webhook_body.json")).unwrap();
    let secret = vector["app_secret"].as_str().unwrap();
    let signature = vector["x_hub_signature_256"]
        .as_str()
        .or_else(|| vector["signature"].as_str())
        .unwrap();
    let mut spawn = Spawn::new(Backends::Embedded);
    spawn
        .extra_env
        .push(("WHATSAPP_APP_SECRET".into(), secret.into()));
    let app = TestApp::start(spawn).await;
    let response = app.post_whatsapp_signed(&body, signature).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn malformed_json_is_400_and_an_oversized_body_is_413() {
    let app = TestApp::embedded().await;
    let response = app
        .post_whatsapp(b"{\"object\": \"whatsapp_business_account\", \"entry\": [")
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "bad_request");
    assert!(
        error["message"].as_str().unwrap().contains("malformed"),
        "{error}"
    );

    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let response = app.post_whatsapp(&big).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "payload_too_large");
}

#[tokio::test]
async fn every_whatsapp_fixture_is_acknowledged_and_recorded() {
    let app = TestApp::embedded().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut recorded_senders = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let is_webhook = (name.starts_with("pywa_")
            || name.starts_with("javaapi_")
            || name.starts_with("meta_doc_"))
            && name.ends_with(".json")
            && !name.contains("request")
            && !name.contains("response")
            && name != "pywa_signed_webhook_body.json";
        if !is_webhook {
            continue;
        }
        let mut payload: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Route every fixture to the test tenant's number.
        for entry in payload["entry"].as_array_mut().unwrap() {
            for change in entry["changes"].as_array_mut().unwrap() {
                change["value"]["metadata"]["phone_number_id"] = PHONE_NUMBER_ID.into();
            }
        }
        let body = serde_json::to_vec(&payload).unwrap();
        let response = app.post_whatsapp(&body).await;
        assert_eq!(
            response.status(),
            200,
            "{name}: {}",
            response.text().await.unwrap()
        );
        if payload.to_string().contains("\"messages\":[") {
            recorded_senders += 1;
        }
    }
    assert!(
        recorded_senders >= 20,
        "only {recorded_senders} message fixtures"
    );
    let conversations = app.admin_get("/api/v1/conversations").await;
    assert!(
        !conversations["conversations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_graph_api_throttle_is_retried_and_an_undeliverable_number_fails_with_its_code() {
    let app = TestApp::embedded().await;
    app.graph.fail_next(1, 400, 130429);
    app.post_whatsapp(&whatsapp_texts("919800000007", &[("wamid.r", "hello")]))
        .await;
    let sent = app.graph.wait_for_sent(2, Duration::from_secs(20)).await;
    assert_eq!(sent[0].body, sent[1].body, "the same reply, retried");
    let conversation = whatsapp_conversation("919800000007");
    assert_eq!(
        app.wait_for_bot_messages(&conversation, 1).await[0]["status"],
        "sent"
    );

    app.graph.fail_next(1, 400, 131026);
    app.post_whatsapp(&whatsapp_texts("919800000008", &[("wamid.u", "hello")]))
        .await;
    let conversation = whatsapp_conversation("919800000008");
    let bot = app.wait_for_bot_messages(&conversation, 1).await;
    assert_eq!(bot[0]["status"], "failed");
    assert_eq!(bot[0]["error_code"], 131026);
}

#[tokio::test]
async fn api_routes_need_the_admin_token_and_errors_are_json() {
    let app = TestApp::embedded().await;
    let response = app
        .http
        .get(app.url("/api/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unauthorized");
    let response = app
        .http
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "not_found");
    let response = app
        .http
        .post(app.url("/api/v1/web/messages"))
        .json(&serde_json::json!({"visitor_id": "visitor-1234", "txt": "typo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("txt"),
        "{error}"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestApp::embedded().await;
    app.post_whatsapp(&whatsapp_texts("919800000009", &[("wamid.m", "hello")]))
        .await;
    app.graph.wait_for_sent(1, Duration::from_secs(20)).await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"]["backend"], "sqlite");
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("parley_webhooks_received_total{channel=\"whatsapp\",result=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("parley_outbound_sends_total{channel=\"whatsapp\",result=\"sent\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("parley_processing_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_graceful_stop_finishes_cleanly() {
    let app = TestApp::embedded().await;
    app.post_whatsapp(&whatsapp_texts("919800000010", &[("wamid.g", "hello")]))
        .await;
    app.graph.wait_for_sent(1, Duration::from_secs(20)).await;
    app.stop().await.expect("a clean stop");
}
