//! Conformance suite of conversation memory: every test body runs against the in-process store
//! and against Redis (when `PARLEY_TEST_REDIS_URL` is set), each Redis test under its own key
//! prefix.

use std::collections::BTreeMap;
use std::time::Duration;

use parley::domain::ConversationId;
use parley::memory::{Memory, MemorySettings, Turn, TurnRole};
use redis::aio::ConnectionManager;

use crate::backends_queue::delete_prefix;
use crate::common::{redis_url, unique_name};

/// Builds the store under test with the settings a test needs.
enum Backend {
    InProcess,
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl Backend {
    async fn redis() -> Option<Self> {
        let url = redis_url()?;
        let client = redis::Client::open(url).expect("PARLEY_TEST_REDIS_URL is a redis URL");
        let conn = ConnectionManager::new(client)
            .await
            .expect("redis answers at PARLEY_TEST_REDIS_URL");
        Some(Self::Redis {
            conn,
            prefix: unique_name("parley_test_memory"),
        })
    }

    fn memory(&self, settings: MemorySettings) -> Memory {
        match self {
            Self::InProcess => Memory::in_process(settings),
            Self::Redis { conn, prefix } => Memory::redis(conn.clone(), prefix, settings),
        }
    }

    async fn cleanup(&self) {
        if let Self::Redis { conn, prefix } = self {
            delete_prefix(conn, prefix).await;
        }
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::Backend::InProcess).await;
                }
            )+
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(backend) = super::Backend::redis().await else {
                        return;
                    };
                    super::$name(&backend).await;
                    backend.cleanup().await;
                }
            )+
        }
    };
}

conformance!(
    recent_turns_come_oldest_first_within_the_window,
    appending_returns_the_turns_that_fell_out_of_the_window,
    several_turns_appended_at_once_keep_their_order_and_drop_the_oldest,
    a_conversation_never_written_is_empty,
    summary_and_facts_round_trip_and_later_writes_replace_earlier_ones,
    forget_removes_turns_summary_and_facts,
    conversations_do_not_see_each_others_memory,
    memory_expires_after_its_ttl_without_writes_and_writes_keep_it,
    the_store_answers_pings,
);

fn conversation() -> ConversationId {
    ConversationId(uuid::Uuid::new_v4())
}

fn turn(n: i64) -> Turn {
    let role = match n % 3 {
        0 => TurnRole::Prospect,
        1 => TurnRole::Bot,
        _ => TurnRole::Staff,
    };
    Turn {
        role,
        text: format!("turn {n}: ünïcödé and \"quotes\""),
        at_ms: 1_700_000_000_000 + n,
    }
}

fn settings(window: usize) -> MemorySettings {
    MemorySettings {
        window,
        ..MemorySettings::default()
    }
}

async fn recent_turns_come_oldest_first_within_the_window(backend: &Backend) {
    let memory = backend.memory(settings(3));
    let c = conversation();
    memory.append(c, turn(1)).await.unwrap();
    memory.append(c, turn(2)).await.unwrap();
    assert_eq!(memory.recent(c).await.unwrap(), vec![turn(1), turn(2)]);
    for n in 3..=5 {
        memory.append(c, turn(n)).await.unwrap();
    }
    assert_eq!(
        memory.recent(c).await.unwrap(),
        vec![turn(3), turn(4), turn(5)]
    );
}

async fn appending_returns_the_turns_that_fell_out_of_the_window(backend: &Backend) {
    let memory = backend.memory(settings(2));
    let c = conversation();
    assert!(memory.append(c, turn(1)).await.unwrap().is_empty());
    assert!(memory.append(c, turn(2)).await.unwrap().is_empty());
    assert_eq!(memory.append(c, turn(3)).await.unwrap(), vec![turn(1)]);
    assert_eq!(memory.append(c, turn(4)).await.unwrap(), vec![turn(2)]);
    assert_eq!(memory.recent(c).await.unwrap(), vec![turn(3), turn(4)]);
}

async fn several_turns_appended_at_once_keep_their_order_and_drop_the_oldest(backend: &Backend) {
    let memory = backend.memory(settings(3));
    let c = conversation();
    memory.append(c, turn(1)).await.unwrap();
    assert!(memory.append_all(c, Vec::new()).await.unwrap().is_empty());
    assert!(
        memory
            .append_all(c, vec![turn(2), turn(3)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        memory.append_all(c, vec![turn(4), turn(5)]).await.unwrap(),
        vec![turn(1), turn(2)]
    );
    assert_eq!(
        memory.recent(c).await.unwrap(),
        vec![turn(3), turn(4), turn(5)]
    );
}

async fn a_conversation_never_written_is_empty(backend: &Backend) {
    let memory = backend.memory(MemorySettings::default());
    let c = conversation();
    assert!(memory.recent(c).await.unwrap().is_empty());
    assert_eq!(memory.summary(c).await.unwrap(), None);
    assert!(memory.facts(c).await.unwrap().is_empty());
}

async fn summary_and_facts_round_trip_and_later_writes_replace_earlier_ones(backend: &Backend) {
    let memory = backend.memory(MemorySettings::default());
    let c = conversation();
    memory.set_summary(c, "asked about prices").await.unwrap();
    assert_eq!(
        memory.summary(c).await.unwrap().as_deref(),
        Some("asked about prices")
    );
    memory
        .set_summary(c, "asked about prices; wants a visit on Friday")
        .await
        .unwrap();
    assert_eq!(
        memory.summary(c).await.unwrap().as_deref(),
        Some("asked about prices; wants a visit on Friday")
    );

    memory.set_fact(c, "name", "Ana").await.unwrap();
    memory.set_fact(c, "budget", "300000").await.unwrap();
    memory.set_fact(c, "budget", "350000").await.unwrap();
    let expected: BTreeMap<String, String> = [("budget", "350000"), ("name", "Ana")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(memory.facts(c).await.unwrap(), expected);
    // Facts and summary do not disturb the turns, nor the other way round.
    memory.append(c, turn(1)).await.unwrap();
    assert_eq!(memory.recent(c).await.unwrap(), vec![turn(1)]);
    assert_eq!(memory.facts(c).await.unwrap(), expected);
}

async fn forget_removes_turns_summary_and_facts(backend: &Backend) {
    let memory = backend.memory(MemorySettings::default());
    let c = conversation();
    memory.append(c, turn(1)).await.unwrap();
    memory.set_summary(c, "summary").await.unwrap();
    memory
        .set_fact(c, "email", "ana@example.com")
        .await
        .unwrap();
    memory.forget(c).await.unwrap();
    assert!(memory.recent(c).await.unwrap().is_empty());
    assert_eq!(memory.summary(c).await.unwrap(), None);
    assert!(memory.facts(c).await.unwrap().is_empty());
    // Forgetting again, or something never known, is fine.
    memory.forget(c).await.unwrap();
}

async fn conversations_do_not_see_each_others_memory(backend: &Backend) {
    let memory = backend.memory(MemorySettings::default());
    let (a, b) = (conversation(), conversation());
    memory.append(a, turn(1)).await.unwrap();
    memory.set_summary(a, "a's summary").await.unwrap();
    memory.set_fact(a, "name", "Ana").await.unwrap();
    memory.append(b, turn(2)).await.unwrap();
    assert_eq!(memory.recent(a).await.unwrap(), vec![turn(1)]);
    assert_eq!(memory.recent(b).await.unwrap(), vec![turn(2)]);
    assert_eq!(memory.summary(b).await.unwrap(), None);
    assert!(memory.facts(b).await.unwrap().is_empty());
    memory.forget(b).await.unwrap();
    assert_eq!(memory.recent(a).await.unwrap(), vec![turn(1)]);
}

async fn memory_expires_after_its_ttl_without_writes_and_writes_keep_it(backend: &Backend) {
    let ttl = Duration::from_millis(2000);
    let memory = backend.memory(MemorySettings { window: 20, ttl });
    let (kept, idle) = (conversation(), conversation());
    for c in [kept, idle] {
        memory.append(c, turn(1)).await.unwrap();
        memory.set_summary(c, "summary").await.unwrap();
        memory.set_fact(c, "name", "Ana").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A write to any part refreshes the whole conversation.
    memory
        .set_fact(kept, "timeline", "this month")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    assert!(memory.recent(idle).await.unwrap().is_empty());
    assert_eq!(memory.summary(idle).await.unwrap(), None);
    assert!(memory.facts(idle).await.unwrap().is_empty());

    assert_eq!(memory.recent(kept).await.unwrap(), vec![turn(1)]);
    assert_eq!(
        memory.summary(kept).await.unwrap().as_deref(),
        Some("summary")
    );
    assert_eq!(memory.facts(kept).await.unwrap().len(), 2);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(memory.recent(kept).await.unwrap().is_empty());
    assert_eq!(memory.summary(kept).await.unwrap(), None);
    assert!(memory.facts(kept).await.unwrap().is_empty());
}

async fn the_store_answers_pings(backend: &Backend) {
    backend
        .memory(MemorySettings::default())
        .ping()
        .await
        .unwrap();
}
