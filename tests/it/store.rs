//! The record store's conformance suite: every test body runs against SQLite and PostgreSQL
//! (`PARLEY_TEST_DATABASE_URL`, one schema per test).

use parley::consent::Purpose;
use parley::domain::{
    Channel, ConversationId, DeliveryStatus, InboundMessage, MessageContent, MessageId,
    ProviderError, ProviderMessageId, StatusUpdate, TenantId,
};
use parley::store::{Accepted, BatchedCompletion, Completion, NewReply, SendFailure, Store};

use crate::common;

pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("test.db"))
        .await
        .unwrap();
    (store, dir)
}

pub async fn postgres_store() -> Option<Store> {
    let url = common::postgres_url()?;
    let schema = common::unique_name("store");
    Some(Store::open_postgres(&url, Some(&schema)).await.unwrap())
}

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = super::postgres_store().await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}
pub(crate) use store_suite;

store_suite!(
    recording_the_same_provider_message_twice_keeps_one,
    pending_messages_come_oldest_first,
    completing_a_message_twice_writes_its_replies_once,
    a_batch_of_completions_writes_each_ones_replies_once_and_in_order,
    only_the_oldest_queued_reply_of_a_conversation_is_claimed,
    a_reply_held_for_quiet_hours_does_not_hold_back_the_next_one,
    a_claimed_reply_is_not_claimed_again_until_its_lease_expires,
    a_vanished_attempt_is_reported_when_reclaimed,
    statuses_only_move_forward_and_failures_keep_their_code,
    a_status_that_arrives_before_the_send_returns_is_applied,
    a_round_of_sends_is_recorded_together_with_early_receipts,
    work_left_pending_is_found_for_recovery,
    reactions_are_recorded_but_need_no_reply,
    the_gate_sees_a_contacts_latest_inbound_message_across_its_conversations,
    the_gate_reads_several_recipients_at_once_in_the_order_asked,
);

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

fn text_from(sender: &str, wamid: &str, sent_at_ms: i64, body: &str) -> InboundMessage {
    InboundMessage {
        tenant: tenant(),
        channel: Channel::Whatsapp,
        provider_message_id: ProviderMessageId::parse(wamid).unwrap(),
        sender: sender.to_owned(),
        thread: sender.to_owned(),
        sender_name: Some("Asha".to_owned()),
        sent_at_ms,
        content: MessageContent::Text {
            body: body.to_owned(),
        },
        context: None,
        referral: None,
    }
}

fn reply(text: &str) -> Completion {
    Completion {
        answered: true,
        intent: Some("pricing".to_owned()),
        confidence: Some(0.9),
        replies: vec![NewReply {
            id: MessageId::new(),
            text: text.to_owned(),
            purpose: Purpose::Reply,
            blocked: None,
        }],
        consent: None,
        handoff: None,
        agent: None,
    }
}

/// Records one message and completes it with one reply; returns the conversation id.
async fn answered(store: &Store, sender: &str, wamid: &str, text: &str) -> ConversationId {
    store
        .record_inbound(&[text_from(sender, wamid, 1_000, "hi")], &[], 1_000)
        .await
        .unwrap();
    let conversation = ConversationId::derive(&tenant(), Channel::Whatsapp, sender);
    let record = store.conversation(conversation).await.unwrap().unwrap();
    let pending = store.pending_inbound(conversation, 10).await.unwrap();
    let last = pending.last().unwrap();
    assert!(
        store
            .complete_inbound(last.id, &record, &reply(text), 2_000)
            .await
            .unwrap()
    );
    conversation
}

/// A conversation with two bot replies queued, `first` then `second` (answers to two messages).
async fn two_replies_queued(
    store: &Store,
    sender: &str,
    first: &str,
    second: &str,
) -> ConversationId {
    let conversation = answered(store, sender, &format!("wamid.{sender}.1"), first).await;
    store
        .record_inbound(
            &[text_from(
                sender,
                &format!("wamid.{sender}.2"),
                1_500,
                "more",
            )],
            &[],
            1_500,
        )
        .await
        .unwrap();
    let record = store.conversation(conversation).await.unwrap().unwrap();
    let pending = store.pending_inbound(conversation, 10).await.unwrap();
    assert!(
        store
            .complete_inbound(pending[0].id, &record, &reply(second), 2_500)
            .await
            .unwrap()
    );
    conversation
}

async fn recording_the_same_provider_message_twice_keeps_one(store: Store) {
    let message = text_from("15550001", "wamid.A", 1_000, "hello");
    let first = store
        .record_inbound(std::slice::from_ref(&message), &[], 10)
        .await
        .unwrap();
    assert_eq!(first.inserted.len(), 1);
    // A redelivery, alone and inside a batch with a new message.
    let again = store
        .record_inbound(std::slice::from_ref(&message), &[], 20)
        .await
        .unwrap();
    assert!(again.inserted.is_empty());
    let mixed = store
        .record_inbound(
            &[
                message.clone(),
                text_from("15550001", "wamid.B", 2_000, "there"),
            ],
            &[],
            30,
        )
        .await
        .unwrap();
    assert_eq!(mixed.inserted.len(), 1);
    assert_eq!(mixed.inserted[0].index, 1);
    let conversation = ConversationId::derive(&tenant(), Channel::Whatsapp, "15550001");
    let messages = store.list_messages(conversation, 100).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].text.as_deref(), Some("hello"));
}

async fn pending_messages_come_oldest_first(store: Store) {
    // Recorded out of order: the later message first.
    store
        .record_inbound(&[text_from("15550002", "wamid.2", 5_000, "second")], &[], 1)
        .await
        .unwrap();
    store
        .record_inbound(&[text_from("15550002", "wamid.1", 4_000, "first")], &[], 2)
        .await
        .unwrap();
    let conversation = ConversationId::derive(&tenant(), Channel::Whatsapp, "15550002");
    let pending = store.pending_inbound(conversation, 10).await.unwrap();
    let texts: Vec<_> = pending
        .iter()
        .map(|p| p.content.text().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["first", "second"]);
}

async fn completing_a_message_twice_writes_its_replies_once(store: Store) {
    store
        .record_inbound(&[text_from("15550003", "wamid.C", 1_000, "price?")], &[], 1)
        .await
        .unwrap();
    let conversation = ConversationId::derive(&tenant(), Channel::Whatsapp, "15550003");
    let record = store.conversation(conversation).await.unwrap().unwrap();
    let pending = store.pending_inbound(conversation, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let id = pending[0].id;
    assert!(
        store
            .complete_inbound(id, &record, &reply("₹1.12 Cr"), 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete_inbound(id, &record, &reply("again"), 3)
            .await
            .unwrap()
    );
    assert!(
        store
            .pending_inbound(conversation, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let messages = store.list_messages(conversation, 100).await.unwrap();
    let bot: Vec<_> = messages
        .iter()
        .filter(|m| m.author == parley::domain::Author::Bot)
        .collect();
    assert_eq!(bot.len(), 1);
    assert_eq!(bot[0].text.as_deref(), Some("₹1.12 Cr"));
    assert_eq!(bot[0].status, "queued");
}

/// Several workers' completions written together (the completer's batch): each message is
/// completed exactly as on its own, with its own time, its replies in part order, its
/// agent's record, and nothing written for a message already handled.
async fn a_batch_of_completions_writes_each_ones_replies_once_and_in_order(store: Store) {
    let senders = ["15550031", "15550032", "15550033", "15550034"];
    let inbound: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(n, sender)| text_from(sender, &format!("wamid.batch{n}"), 1_000, "price?"))
        .collect();
    store.record_inbound(&inbound, &[], 1).await.unwrap();
    let mut conversations = Vec::new();
    for sender in senders {
        let id = ConversationId::derive(&tenant(), Channel::Whatsapp, sender);
        let record = store.conversation(id).await.unwrap().unwrap();
        let pending = store.pending_inbound(id, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        conversations.push((record, pending[0].id));
    }
    let mut two_parts = reply("Part one");
    two_parts.replies.push(NewReply {
        id: MessageId::new(),
        text: "Part two".to_owned(),
        purpose: Purpose::Reply,
        blocked: None,
    });
    two_parts.agent = Some(parley::store::AgentMeta {
        agent: "pricing".to_owned(),
        factors: serde_json::json!({"confidence": 0.8}),
        sources: serde_json::json!([{"id": "price-list"}]),
    });
    let single = reply("Only part");
    let unanswered = Completion {
        answered: false,
        intent: None,
        confidence: None,
        replies: Vec::new(),
        consent: None,
        handoff: None,
        agent: None,
    };
    let batch: Vec<BatchedCompletion> = [&two_parts, &single, &unanswered]
        .into_iter()
        .zip(&conversations)
        .enumerate()
        .map(|(n, (completion, (record, message)))| BatchedCompletion {
            message: *message,
            conversation: record,
            completion,
            now: 5_000 + n as i64,
        })
        .collect();
    assert_eq!(
        store.complete_inbound_batch(&batch).await.unwrap(),
        [true, true, true]
    );

    let bot_texts = |messages: &[parley::store::MessageRecord]| -> Vec<String> {
        messages
            .iter()
            .filter(|m| m.author == parley::domain::Author::Bot)
            .map(|m| m.text.clone().unwrap_or_default())
            .collect()
    };
    let first = store
        .list_messages(conversations[0].0.id, 100)
        .await
        .unwrap();
    assert_eq!(bot_texts(&first), ["Part one", "Part two"]);
    let first_reply = first
        .iter()
        .find(|m| m.author == parley::domain::Author::Bot)
        .unwrap();
    assert_eq!(first_reply.status, "queued");
    assert_eq!(first_reply.created_at, 5_000);
    assert_eq!(first_reply.agent.as_deref(), Some("pricing"));
    assert_eq!(first_reply.intent.as_deref(), Some("pricing"));
    let inbound_first = first
        .iter()
        .find(|m| m.author == parley::domain::Author::Prospect)
        .unwrap();
    assert_eq!(inbound_first.intent.as_deref(), Some("pricing"));
    assert_eq!(inbound_first.updated_at, 5_000);
    let second = store
        .list_messages(conversations[1].0.id, 100)
        .await
        .unwrap();
    assert_eq!(bot_texts(&second), ["Only part"]);
    let third = store
        .list_messages(conversations[2].0.id, 100)
        .await
        .unwrap();
    assert!(bot_texts(&third).is_empty());
    for (n, (record, _)) in conversations.iter().take(3).enumerate() {
        assert!(
            store
                .pending_inbound(record.id, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let touched = store.conversation(record.id).await.unwrap().unwrap();
        assert_eq!(touched.updated_at, 5_000 + n as i64);
    }

    // The same message again (a worker whose lease ran out) beside one still pending.
    let again = reply("Again");
    let fourth = reply("Fourth");
    let batch = [
        BatchedCompletion {
            message: conversations[0].1,
            conversation: &conversations[0].0,
            completion: &again,
            now: 6_000,
        },
        BatchedCompletion {
            message: conversations[3].1,
            conversation: &conversations[3].0,
            completion: &fourth,
            now: 6_001,
        },
    ];
    assert_eq!(
        store.complete_inbound_batch(&batch).await.unwrap(),
        [false, true]
    );
    let first = store
        .list_messages(conversations[0].0.id, 100)
        .await
        .unwrap();
    assert_eq!(bot_texts(&first), ["Part one", "Part two"]);
    let fourth = store
        .list_messages(conversations[3].0.id, 100)
        .await
        .unwrap();
    assert_eq!(bot_texts(&fourth), ["Fourth"]);

    // The sender takes each conversation's oldest reply first.
    let claimed = store.claim_outbound(10_000, 30_000, 10).await.unwrap();
    let mut texts: Vec<_> = claimed.iter().map(|j| j.text.as_str()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["Fourth", "Only part", "Part one"]);
}

async fn a_reply_held_for_quiet_hours_does_not_hold_back_the_next_one(store: Store) {
    two_replies_queued(&store, "15550014", "one", "two").await;

    let first = store.claim_outbound(10_000, 30_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].text, "one");
    // The gate holds "one" until 50_000 for quiet hours: "two" may go meanwhile.
    store
        .defer_outbound(first[0].id, 50_000, "quiet_hours", 10_001)
        .await
        .unwrap();
    let next = store.claim_outbound(10_002, 30_000, 10).await.unwrap();
    let texts: Vec<_> = next.iter().map(|j| j.text.as_str()).collect();
    assert_eq!(texts, ["two"]);

    // Any other deferral keeps the order: nothing behind it leaves first.
    let other = two_replies_queued(&store, "15550015", "first", "second").await;
    let claimed = store.claim_outbound(60_000, 30_000, 10).await.unwrap();
    let head = claimed.iter().find(|j| j.conversation_id == other).unwrap();
    assert_eq!(head.text, "first");
    store
        .defer_outbound(head.id, 200_000, "window_closed", 60_001)
        .await
        .unwrap();
    let after = store.claim_outbound(100_000, 30_000, 10).await.unwrap();
    assert!(
        after.iter().all(|j| j.conversation_id != other),
        "{:?}",
        after.iter().map(|j| &j.text).collect::<Vec<_>>()
    );
}

async fn only_the_oldest_queued_reply_of_a_conversation_is_claimed(store: Store) {
    let conversation = two_replies_queued(&store, "15550004", "one", "two").await;
    let other = answered(&store, "15550005", "wamid.E1", "other").await;

    let claimed = store.claim_outbound(10_000, 30_000, 10).await.unwrap();
    let texts: Vec<_> = claimed.iter().map(|j| j.text.as_str()).collect();
    assert_eq!(claimed.len(), 2, "{texts:?}");
    assert!(
        texts.contains(&"one") && texts.contains(&"other"),
        "{texts:?}"
    );
    assert!(
        claimed
            .iter()
            .all(|j| j.conversation_id == conversation || j.conversation_id == other)
    );

    // "two" becomes claimable once "one" is sent; a retry of "one" would have kept it back.
    let one = claimed.iter().find(|j| j.text == "one").unwrap();
    store
        .mark_sent(
            one.id,
            Some(&ProviderMessageId::parse("wamid.out1").unwrap()),
            DeliveryStatus::Sent,
            10_001,
        )
        .await
        .unwrap();
    let next = store.claim_outbound(10_002, 30_000, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].text, "two");
    assert_eq!(next[0].address, "15550004");
}

async fn a_claimed_reply_is_not_claimed_again_until_its_lease_expires(store: Store) {
    answered(&store, "15550006", "wamid.F", "hello").await;
    let first = store.claim_outbound(10_000, 5_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store
            .claim_outbound(12_000, 5_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A retryable failure: due again at 20_000, not before.
    store
        .schedule_retry(
            first[0].id,
            20_000,
            &SendFailure {
                code: Some(130429),
                detail: "throughput".into(),
            },
            12_500,
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound(19_999, 5_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store.claim_outbound(20_000, 5_000, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 2);
    assert!(!retried[0].previous_attempt_vanished);
    store
        .mark_failed(
            retried[0].id,
            &SendFailure {
                code: Some(131026),
                detail: "undeliverable".into(),
            },
            21_000,
        )
        .await
        .unwrap();
    let record = store.message(retried[0].id).await.unwrap().unwrap();
    assert_eq!(record.status, "failed");
    assert_eq!(record.error_code, Some(131026));
    assert!(
        store
            .claim_outbound(99_000, 5_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_vanished_attempt_is_reported_when_reclaimed(store: Store) {
    answered(&store, "15550007", "wamid.G", "hello").await;
    let first = store.claim_outbound(10_000, 5_000, 10).await.unwrap();
    assert!(!first[0].previous_attempt_vanished);
    // The sender died: no outcome recorded. After the lease the message is claimed again.
    let again = store.claim_outbound(15_001, 5_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].previous_attempt_vanished);
}

fn status(wamid: &str, status: DeliveryStatus, error: Option<i64>) -> StatusUpdate {
    StatusUpdate {
        tenant: tenant(),
        channel: Channel::Whatsapp,
        provider_message_id: ProviderMessageId::parse(wamid).unwrap(),
        status,
        at_ms: 1,
        error: error.map(|code| ProviderError {
            code,
            title: Some("failed".into()),
        }),
    }
}

async fn statuses_only_move_forward_and_failures_keep_their_code(store: Store) {
    answered(&store, "15550008", "wamid.H", "hello").await;
    let job = store
        .claim_outbound(10_000, 5_000, 10)
        .await
        .unwrap()
        .remove(0);
    let wamid = ProviderMessageId::parse("wamid.sent.H").unwrap();
    store
        .mark_sent(job.id, Some(&wamid), DeliveryStatus::Sent, 10_001)
        .await
        .unwrap();
    let changed = store
        .apply_statuses(
            &[status("wamid.sent.H", DeliveryStatus::Read, None)],
            10_002,
        )
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    // Late and duplicated receipts change nothing.
    let changed = store
        .apply_statuses(
            &[
                status("wamid.sent.H", DeliveryStatus::Delivered, None),
                status("wamid.sent.H", DeliveryStatus::Read, None),
            ],
            10_003,
        )
        .await
        .unwrap();
    assert!(changed.is_empty());
    assert_eq!(store.message(job.id).await.unwrap().unwrap().status, "read");
    store
        .apply_statuses(
            &[status("wamid.sent.H", DeliveryStatus::Failed, Some(131047))],
            10_004,
        )
        .await
        .unwrap();
    let record = store.message(job.id).await.unwrap().unwrap();
    assert_eq!(record.status, "failed");
    assert_eq!(record.error_code, Some(131047));
}

async fn a_status_that_arrives_before_the_send_returns_is_applied(store: Store) {
    answered(&store, "15550009", "wamid.I", "hello").await;
    let job = store
        .claim_outbound(10_000, 5_000, 10)
        .await
        .unwrap()
        .remove(0);
    // Meta reports delivery before our send call has recorded the id.
    let outcome = store
        .record_inbound(
            &[],
            &[status("wamid.sent.I", DeliveryStatus::Delivered, None)],
            10_001,
        )
        .await
        .unwrap();
    assert!(outcome.status_changes.is_empty());
    store
        .mark_sent(
            job.id,
            Some(&ProviderMessageId::parse("wamid.sent.I").unwrap()),
            DeliveryStatus::Sent,
            10_002,
        )
        .await
        .unwrap();
    assert_eq!(
        store.message(job.id).await.unwrap().unwrap().status,
        "delivered"
    );
}

async fn a_round_of_sends_is_recorded_together_with_early_receipts(store: Store) {
    for (sender, wamid) in [
        ("15550101", "wamid.R1"),
        ("15550102", "wamid.R2"),
        ("15550103", "wamid.R3"),
    ] {
        answered(&store, sender, wamid, "hello").await;
    }
    let jobs = store.claim_outbound(10_000, 5_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 3);
    // The second reply's delivery (and a lesser sent receipt) arrive before the round is recorded.
    store
        .record_inbound(
            &[],
            &[
                status("wamid.out.2", DeliveryStatus::Sent, None),
                status("wamid.out.2", DeliveryStatus::Delivered, None),
            ],
            10_001,
        )
        .await
        .unwrap();
    // The third was meanwhile recorded failed by another path: the round must not revive it.
    let failure = SendFailure {
        code: Some(131047),
        detail: "re-engagement window closed".to_owned(),
    };
    store
        .mark_failed(jobs[2].id, &failure, 10_001)
        .await
        .unwrap();
    let round: Vec<Accepted> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| Accepted {
            id: job.id,
            provider_id: Some(ProviderMessageId::parse(&format!("wamid.out.{}", i + 1)).unwrap()),
            status: DeliveryStatus::Sent,
        })
        .collect();
    store.mark_sent_many(&round, 10_002).await.unwrap();

    let ids: Vec<MessageId> = jobs.iter().map(|j| j.id).collect();
    let mut records = store.messages(&ids).await.unwrap();
    records.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
    let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["sent", "delivered", "failed"]);
    assert_eq!(records[2].error_code, Some(131047));
    // Sent messages are no longer claimable; nothing else is due.
    assert!(
        store
            .claim_outbound(20_000, 5_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Unknown ids are left out of a lookup.
    assert_eq!(store.messages(&[MessageId::new()]).await.unwrap().len(), 0);
}

async fn work_left_pending_is_found_for_recovery(store: Store) {
    store
        .record_inbound(&[text_from("15550010", "wamid.J", 1, "hi")], &[], 1_000)
        .await
        .unwrap();
    let conversation = ConversationId::derive(&tenant(), Channel::Whatsapp, "15550010");
    assert!(
        store
            .conversations_with_pending(999, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.conversations_with_pending(1_000, 10).await.unwrap(),
        vec![conversation]
    );
    answered(&store, "15550011", "wamid.K", "done").await;
    let found = store
        .conversations_with_pending(i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(found, vec![conversation]);
}

async fn the_gate_sees_a_contacts_latest_inbound_message_across_its_conversations(store: Store) {
    // One contact writing in two threads (two conversations), and a stranger writing later.
    let in_thread = |thread: &str, wamid: &str, at: i64| {
        let mut message = text_from("15550199", wamid, at, "hi");
        message.thread = thread.to_owned();
        message
    };
    for (message, at) in [
        (in_thread("a", "wamid.G1", 1_000), 1_000),
        (in_thread("b", "wamid.G2", 5_000), 5_000),
        (in_thread("a", "wamid.G3", 3_000), 3_000),
        (text_from("15550200", "wamid.G4", 9_000, "hi"), 9_000),
    ] {
        store.record_inbound(&[message], &[], at).await.unwrap();
    }
    let thread_a = ConversationId::derive(&tenant(), Channel::Whatsapp, "a");
    let record = store.conversation(thread_a).await.unwrap().unwrap();
    // The bot's reply, later still, is not the contact writing.
    let pending = store.pending_inbound(thread_a, 10).await.unwrap();
    assert!(
        store
            .complete_inbound(pending[0].id, &record, &reply("hello"), 7_000)
            .await
            .unwrap()
    );

    let facts = store
        .gate_facts(
            &tenant(),
            "subject",
            record.contact_id,
            Channel::Whatsapp,
            0,
        )
        .await
        .unwrap();
    assert_eq!(facts.last_inbound_at, Some(5_000));
    assert_eq!(facts.recent_proactive, 0);
    assert_eq!(facts.latest_consent, None);

    // A contact that never wrote has no last inbound message.
    let stranger = parley::domain::ContactId(uuid::Uuid::new_v4());
    let facts = store
        .gate_facts(&tenant(), "nobody", stranger, Channel::Whatsapp, 0)
        .await
        .unwrap();
    assert_eq!(facts.last_inbound_at, None);
}

async fn the_gate_reads_several_recipients_at_once_in_the_order_asked(store: Store) {
    use parley::consent::{ConsentAction, ConsentSource, NewConsentEvent};
    use parley::store::GateFactsQuery;
    // One contact who wrote at 1_000, one who wrote at 2_000 and then opted out.
    let mut contacts = Vec::new();
    for (address, wamid, at) in [
        ("15550301", "wamid.M1", 1_000),
        ("15550302", "wamid.M2", 2_000),
    ] {
        store
            .record_inbound(&[text_from(address, wamid, at, "hi")], &[], at)
            .await
            .unwrap();
        let id = ConversationId::derive(&tenant(), Channel::Whatsapp, address);
        contacts.push(store.conversation(id).await.unwrap().unwrap().contact_id);
    }
    let (writes, stops) = (contacts[0], contacts[1]);
    let stranger = parley::domain::ContactId(uuid::Uuid::new_v4());
    let opt_out = NewConsentEvent {
        tenant: tenant(),
        contact: stops,
        channel: Channel::Whatsapp,
        action: ConsentAction::OptOut,
        source: ConsentSource::Keyword,
        proof: None,
        detail: Some("STOP".into()),
        at_ms: 2_001,
    };
    store.append_consent("stops", &opt_out).await.unwrap();

    let tenant = tenant();
    let ask = |subject, contact| GateFactsQuery {
        tenant: &tenant,
        subject,
        contact,
        channel: Channel::Whatsapp,
        proactive_since: 0,
    };
    let asked = [
        ask("stops", stops),
        ask("nobody", stranger),
        ask("writes", writes),
        ask("stops", stops),
    ];
    let facts = store.gate_facts_many(&asked).await.unwrap();
    let seen: Vec<_> = facts
        .iter()
        .map(|f| (f.latest_consent, f.last_inbound_at))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(ConsentAction::OptOut), Some(2_000)),
            (None, None),
            (None, Some(1_000)),
            (Some(ConsentAction::OptOut), Some(2_000)),
        ]
    );
    // More recipients than one statement takes: still one answer each, in order.
    let many: Vec<_> = (0..150)
        .map(|i| match i % 3 {
            0 => ask("stops", stops),
            1 => ask("nobody", stranger),
            _ => ask("writes", writes),
        })
        .collect();
    let facts = store.gate_facts_many(&many).await.unwrap();
    assert_eq!(facts.len(), 150);
    for (i, f) in facts.iter().enumerate() {
        let expected = [Some(2_000), None, Some(1_000)][i % 3];
        assert_eq!(f.last_inbound_at, expected, "recipient {i}");
    }
    assert!(store.gate_facts_many(&[]).await.unwrap().is_empty());
}

async fn reactions_are_recorded_but_need_no_reply(store: Store) {
    let mut reaction = text_from("15550012", "wamid.L", 1, "");
    reaction.content = MessageContent::Reaction {
        message_id: "wamid.X".into(),
        emoji: Some("👍".into()),
    };
    let outcome = store.record_inbound(&[reaction], &[], 1).await.unwrap();
    assert_eq!(outcome.inserted.len(), 1);
    assert!(!outcome.inserted[0].pending);
    assert!(outcome.conversations().is_empty());
    let conversation = ConversationId::derive(&tenant(), Channel::Whatsapp, "15550012");
    assert!(
        store
            .pending_inbound(conversation, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_messages(conversation, 10).await.unwrap()[0].kind,
        "reaction"
    );
}

#[tokio::test]
async fn planner_statistics_follow_a_burst_of_writes_on_postgres() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let burst: Vec<InboundMessage> = (0..600)
        .map(|i| {
            text_from(
                &format!("91980000{i:04}"),
                &format!("wamid.burst.{i}"),
                1_000 + i,
                "hi",
            )
        })
        .collect();
    store.record_inbound(&burst, &[], 1_000).await.unwrap();
    // PostgreSQL publishes table counters about once a second.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let report = loop {
        let report = store.refresh_planner_statistics().await.unwrap();
        if report.analysed.iter().any(|t| t == "messages") {
            break report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "600 new messages never led to ANALYZE"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        report.analysed.iter().any(|t| t == "contacts"),
        "{report:?}"
    );
    let Store::Postgres(pool) = &store else {
        unreachable!()
    };
    let (analysed_rows,): (f32,) = sqlx::query_as(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(current_schema() || '.messages')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        analysed_rows, 600.0,
        "the planner now knows the table's size"
    );
    let again = store.refresh_planner_statistics().await.unwrap();
    assert!(
        !again.analysed.iter().any(|t| t == "messages"),
        "nothing changed since: {again:?}"
    );
}

/// Server-side ids of every connection the pool holds now (all taken at once, then returned).
async fn pooled_backends(pool: &sqlx::PgPool) -> Vec<i32> {
    let mut held = Vec::new();
    for _ in 0..pool.size() {
        held.push(pool.acquire().await.unwrap());
    }
    let mut pids = Vec::new();
    for conn in &mut held {
        let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        pids.push(pid);
    }
    pids
}

/// Ends those backends from outside the pool, as a PostgreSQL restart or a failover would, and
/// waits until the server has let them go.
async fn drop_backends(url: &str, pids: &[i32]) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    for pid in pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (left,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(pids)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "backends linger");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Pooled connections are not pinged before every use (that was a round trip per statement),
/// yet losing them to the server costs nothing once they sat idle a second: they are checked
/// first and replaced. A connection lost right after its last use fails one statement, which
/// the caller sees as an error (a webhook answers 503 and is redelivered): nothing is recorded
/// twice or lost.
#[tokio::test]
async fn postgres_store_carries_on_after_the_server_drops_its_connections() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let store = Store::open_postgres(&url, Some(&common::unique_name("store")))
        .await
        .unwrap();
    let Store::Postgres(pool) = &store else {
        unreachable!("opened PostgreSQL")
    };
    let record = |wamid: &'static str| {
        let store = store.clone();
        async move {
            store
                .record_inbound(
                    &[text_from("+919800000001", wamid, 1_000, "hi")],
                    &[],
                    1_000,
                )
                .await
        }
    };
    record("wamid.before").await.unwrap();

    // Idle past the check: the lost connections are found out before use.
    let lost = pooled_backends(pool).await;
    assert!(!lost.is_empty());
    drop_backends(&url, &lost).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let outcome = record("wamid.after-idle").await.unwrap();
    assert_eq!(outcome.inserted.len(), 1);
    let now = pooled_backends(pool).await;
    assert!(
        now.iter().all(|pid| !lost.contains(pid)),
        "{now:?} reuses {lost:?}"
    );

    // Lost right after use: each lost connection fails at most one statement, whenever it is
    // next taken (a webhook would answer 503 and be redelivered); the delivery and its
    // redelivery are then recorded once.
    let lost = pooled_backends(pool).await;
    drop_backends(&url, &lost).await;
    let mut failures = 0;
    let mut outcomes = Vec::new();
    while outcomes.len() < 2 {
        match record("wamid.right-after").await {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => failures += 1,
        }
        assert!(
            failures <= lost.len(),
            "{failures} failures with {} lost connections",
            lost.len()
        );
    }
    assert_eq!(outcomes[0].inserted.len(), 1);
    assert!(
        outcomes[1].inserted.is_empty(),
        "a redelivery is a duplicate"
    );
    let (recorded,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM messages WHERE direction = 'inbound'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(recorded, 3);
}
