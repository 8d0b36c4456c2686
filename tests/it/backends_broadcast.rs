//! Conformance suite of live-event fan-out: every test body runs against the in-process fan-out
//! and against Redis pub/sub (when `PARLEY_TEST_REDIS_URL` is set), each Redis test under its own
//! key prefix.

use std::time::Duration;

use futures::StreamExt;
use parley::broadcast::{LiveEvents, LiveSubscription};
use serde_json::{Value, json};

use crate::common::{redis_url, unique_name};

/// Where a test's fan-outs come from. Each call of [`Backend::instance`] is another replica:
/// for Redis a new instance (its own pub/sub connection) on the shared prefix; in-process the
/// same fan-out, since in-process means one replica.
enum Backend {
    InProcess(LiveEvents),
    Redis {
        client: redis::Client,
        prefix: String,
    },
}

impl Backend {
    fn in_process() -> Self {
        Self::InProcess(LiveEvents::in_process())
    }

    fn redis() -> Option<Self> {
        let url = redis_url()?;
        Some(Self::Redis {
            client: redis::Client::open(url).expect("PARLEY_TEST_REDIS_URL is a redis URL"),
            prefix: unique_name("parley_test_live"),
        })
    }

    async fn instance(&self) -> LiveEvents {
        match self {
            Self::InProcess(live) => live.clone(),
            Self::Redis { client, prefix } => LiveEvents::redis(client.clone(), prefix)
                .await
                .expect("redis pub/sub connects"),
        }
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::in_process()).await;
                }
            )+
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::Backend::redis() else {
                        return;
                    };
                    super::$name(&backend).await;
                }
            )+
        }
    };
}

conformance!(
    subscribers_receive_the_events_of_their_topic_in_order,
    events_published_together_arrive_in_order_after_earlier_ones,
    events_do_not_leak_across_topics,
    events_published_on_one_instance_reach_subscribers_on_another,
    a_subscriber_that_stops_reading_does_not_block_publishers,
    publishing_to_a_topic_nobody_listens_to_succeeds,
);

async fn next_event(subscription: &mut LiveSubscription) -> Value {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("an event arrives within 5s")
        .expect("the subscription is open")
}

async fn assert_no_event(subscription: &mut LiveSubscription) {
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await {
        panic!("unexpected event: {event:?}");
    }
}

async fn subscribers_receive_the_events_of_their_topic_in_order(backend: &Backend) {
    let live = backend.instance().await;
    let mut first = live.subscribe("conversation:1");
    let mut second = live.subscribe("conversation:1");
    for n in 0..3 {
        live.publish("conversation:1", &json!({"n": n}))
            .await
            .unwrap();
    }
    for subscription in [&mut first, &mut second] {
        for n in 0..3 {
            assert_eq!(next_event(subscription).await, json!({"n": n}));
        }
    }
}

async fn events_published_together_arrive_in_order_after_earlier_ones(backend: &Backend) {
    let live = backend.instance().await;
    let mut subscription = live.subscribe("conversation:1");
    let mut other = live.subscribe("conversation:2");
    live.publish("conversation:1", &json!({"n": 0}))
        .await
        .unwrap();
    let together: Vec<Value> = (1..4).map(|n| json!({"n": n})).collect();
    live.publish_all("conversation:1", &together).await.unwrap();
    live.publish_all("conversation:1", &[]).await.unwrap();
    for n in 0..4 {
        assert_eq!(next_event(&mut subscription).await, json!({"n": n}));
    }
    assert_no_event(&mut subscription).await;
    assert_no_event(&mut other).await;
}

async fn events_do_not_leak_across_topics(backend: &Backend) {
    let live = backend.instance().await;
    let mut conversation = live.subscribe("conversation:1");
    let mut other = live.subscribe("conversation:2");
    let mut handoffs = live.subscribe("handoffs:default");
    live.publish("conversation:1", &json!({"for": "conversation"}))
        .await
        .unwrap();
    live.publish("handoffs:default", &json!({"for": "handoffs"}))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut conversation).await,
        json!({"for": "conversation"})
    );
    assert_eq!(next_event(&mut handoffs).await, json!({"for": "handoffs"}));
    assert_no_event(&mut conversation).await;
    assert_no_event(&mut handoffs).await;
    assert_no_event(&mut other).await;
}

async fn events_published_on_one_instance_reach_subscribers_on_another(backend: &Backend) {
    let (one, two) = (backend.instance().await, backend.instance().await);
    let mut on_one = one.subscribe("handoffs:acme");
    let mut on_two = two.subscribe("handoffs:acme");
    one.publish("handoffs:acme", &json!({"from": "one"}))
        .await
        .unwrap();
    two.publish("handoffs:acme", &json!({"from": "two"}))
        .await
        .unwrap();
    for subscription in [&mut on_one, &mut on_two] {
        assert_eq!(next_event(subscription).await, json!({"from": "one"}));
        assert_eq!(next_event(subscription).await, json!({"from": "two"}));
    }
}

async fn a_subscriber_that_stops_reading_does_not_block_publishers(backend: &Backend) {
    const EVENTS: u64 = 2_000;
    let live = backend.instance().await;
    let mut stalled = live.subscribe("conversation:busy");
    let mut reader = live.subscribe("conversation:busy");
    let last = tokio::spawn(async move {
        loop {
            let event = next_event(&mut reader).await;
            if event == json!({"n": EVENTS - 1}) {
                return;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), async {
        for n in 0..EVENTS {
            live.publish("conversation:busy", &json!({"n": n}))
                .await
                .unwrap();
        }
    })
    .await
    .expect("publishing is not held up by a subscriber that does not read");
    last.await
        .expect("the reading subscriber got the last event");

    // The stalled subscriber missed events but still gets the most recent ones, in order.
    let mut seen = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), stalled.next()).await
    {
        seen.push(event["n"].as_u64().unwrap());
    }
    assert!(
        !seen.is_empty() && (seen.len() as u64) < EVENTS,
        "saw {}",
        seen.len()
    );
    assert_eq!(seen.last(), Some(&(EVENTS - 1)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

async fn publishing_to_a_topic_nobody_listens_to_succeeds(backend: &Backend) {
    let live = backend.instance().await;
    live.publish("conversation:nobody", &json!({}))
        .await
        .unwrap();
    // A subscription that is dropped leaves the topic as it found it.
    drop(live.subscribe("conversation:nobody"));
    live.publish("conversation:nobody", &json!({}))
        .await
        .unwrap();
}
