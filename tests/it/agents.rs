//! The specialist agents end to end: routing by intent to the agent files, the scheduling tool's
//! offer and the prospect's pick recorded as a visit request.

use std::sync::Arc;
use std::time::Duration;

use parley::domain::{Channel, ConversationId, ManualClock, TenantId};

use crate::harness::{Backends, Spawn, TestApp, whatsapp_texts};

fn sends_to(app: &TestApp, wa_id: &str) -> Vec<String> {
    app.graph
        .sent_messages()
        .into_iter()
        .filter(|r| r.body["to"] == wa_id)
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn wait_for_sends(app: &TestApp, wa_id: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sends = sends_to(app, wa_id);
        if sends.len() >= n {
            return sends;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {sends:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_scheduling_agent_offers_slots_and_records_the_pick() {
    // Saturday 2026-11-21 12:00 in Kolkata: the first slots are Monday's.
    let clock = ManualClock::new(
        "2026-11-21T06:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
    );
    let app = TestApp::start(Spawn::new(Backends::Embedded).with_clock(Arc::new(clock))).await;
    let wa = "919800002001";
    let post = |wamid: &'static str, text: &'static str| {
        let app = &app;
        async move {
            let response = app
                .post_whatsapp(&whatsapp_texts(wa, &[(wamid, text)]))
                .await;
            assert_eq!(response.status(), 200);
        }
    };
    post("wamid.visit.1", "I want to book a site visit").await;
    let sends = wait_for_sends(&app, wa, 1).await;
    assert!(sends[0].contains("1) Mon 23 Nov, 11:00"), "{sends:?}");
    assert!(sends[0].contains("2) Mon 23 Nov, 15:00"), "{sends:?}");
    post("wamid.visit.2", "2").await;
    let sends = wait_for_sends(&app, wa, 2).await;
    assert!(
        sends[1].contains("requested a site visit on Mon 23 Nov, 15:00"),
        "{sends:?}"
    );
    let conversation = ConversationId::derive(&TenantId::default_tenant(), Channel::Whatsapp, wa);
    let visits = app.state.store.visit_requests(conversation).await.unwrap();
    assert_eq!(visits.len(), 1);
    assert_eq!(
        visits[0].slot_at,
        "2026-11-23T09:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond()
    );
}
