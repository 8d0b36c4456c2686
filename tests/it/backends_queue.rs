//! Conformance suite of the per-conversation work queue: every test body runs against the
//! in-process queue and against Redis (when `PARLEY_TEST_REDIS_URL` is set), each Redis test
//! under its own key prefix. Redis-only tests cover what only a shared backend has: a replica
//! that dies holding work, and a Redis server that restarts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use parley::broadcast::LiveEvents;
use parley::domain::ConversationId;
use parley::memory::{Memory, MemorySettings, Turn, TurnRole};
use parley::queue::{Lease, QueueSettings, WorkQueue};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::common::{redis_url, services_required, unique_name};

/// Where a test's queues come from. Each call of [`Backend::queue`] is another worker process:
/// for Redis a new consumer on the shared prefix, in-process another handle on the one queue.
enum Backend {
    InProcess(WorkQueue),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        settings: QueueSettings,
    },
}

impl Backend {
    fn in_process() -> Self {
        Self::InProcess(WorkQueue::in_process())
    }

    async fn redis(settings: QueueSettings) -> Option<Self> {
        let url = redis_url()?;
        let client = redis::Client::open(url).expect("PARLEY_TEST_REDIS_URL is a redis URL");
        let conn = ConnectionManager::new(client)
            .await
            .expect("redis answers at PARLEY_TEST_REDIS_URL");
        Some(Self::Redis {
            conn,
            prefix: unique_name("parley_test_queue"),
            settings,
        })
    }

    async fn queue(&self, consumer: &str) -> WorkQueue {
        match self {
            Self::InProcess(queue) => queue.clone(),
            Self::Redis {
                conn,
                prefix,
                settings,
            } => WorkQueue::redis(conn.clone(), prefix, consumer, *settings)
                .await
                .expect("the redis queue starts"),
        }
    }

    /// Deletes the test's keys (best effort; they are uniquely prefixed anyway).
    async fn cleanup(&self) {
        if let Self::Redis { conn, prefix, .. } = self {
            delete_prefix(conn, prefix).await;
        }
    }
}

pub(crate) async fn delete_prefix(conn: &ConnectionManager, prefix: &str) {
    let mut conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Backend::in_process()).await;
                }
            )+
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(backend) = super::Backend::redis(Default::default()).await else {
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
    a_conversation_is_never_held_twice_and_every_push_is_followed_by_a_delivery,
    different_conversations_are_held_at_once,
    a_push_during_a_lease_leads_to_one_more_delivery_after_it,
    pushes_of_a_conversation_still_waiting_make_one_delivery,
    a_lease_dropped_without_finish_is_delivered_again,
    two_instances_share_the_work_without_overlap,
    depth_counts_announcements_waiting_for_a_worker,
    a_cancelled_next_loses_no_announcement,
);

fn conversation() -> ConversationId {
    ConversationId(uuid::Uuid::new_v4())
}

async fn next_within(queue: &WorkQueue, secs: u64) -> Lease {
    tokio::time::timeout(Duration::from_secs(secs), queue.next())
        .await
        .unwrap_or_else(|_| panic!("no delivery within {secs}s"))
        .expect("next succeeds")
}

async fn assert_nothing_delivered(queue: &WorkQueue, ms: u64) {
    if let Ok(lease) = tokio::time::timeout(Duration::from_millis(ms), queue.next()).await {
        panic!("unexpected delivery: {:?}", lease.map(|l| l.conversation()));
    }
}

/// Per conversation: how many workers hold it now, the most that ever did, and the order
/// (a global sequence) of its last push and its last delivery.
#[derive(Default)]
struct Tally {
    active: AtomicI64,
    most_active: AtomicI64,
    last_push: AtomicU64,
    last_delivery: AtomicU64,
    deliveries: AtomicU64,
}

async fn a_conversation_is_never_held_twice_and_every_push_is_followed_by_a_delivery(
    backend: &Backend,
) {
    const WORKERS_PER_INSTANCE: usize = 4;
    const ROUNDS: usize = 10;
    const PUSHES_PER_ROUND: usize = 40;
    let instances = [backend.queue("one").await, backend.queue("two").await];
    let conversations: Vec<ConversationId> = (0..4).map(|_| conversation()).collect();
    let tallies: Arc<HashMap<ConversationId, Tally>> = Arc::new(
        conversations
            .iter()
            .map(|c| (*c, Tally::default()))
            .collect(),
    );
    let sequence = Arc::new(AtomicU64::new(1));

    let mut workers = Vec::new();
    for (i, queue) in instances.iter().enumerate() {
        for w in 0..WORKERS_PER_INSTANCE {
            let queue = queue.clone();
            let tallies = Arc::clone(&tallies);
            let sequence = Arc::clone(&sequence);
            workers.push(tokio::spawn(async move {
                loop {
                    let lease = queue.next().await.expect("next succeeds");
                    let at = sequence.fetch_add(1, Ordering::SeqCst);
                    let tally = &tallies[&lease.conversation()];
                    let now = tally.active.fetch_add(1, Ordering::SeqCst) + 1;
                    tally.most_active.fetch_max(now, Ordering::SeqCst);
                    tally.last_delivery.fetch_max(at, Ordering::SeqCst);
                    tally.deliveries.fetch_add(1, Ordering::SeqCst);
                    // Processing takes 1 to 4 ms.
                    let work_us = 1_000 + ((i * 7 + w * 13 + at as usize) % 7) as u64 * 500;
                    tokio::time::sleep(Duration::from_micros(work_us)).await;
                    tally.active.fetch_sub(1, Ordering::SeqCst);
                    lease.finish().await.expect("finish succeeds");
                }
            }));
        }
    }

    // Rounds of pushes that land while the conversations are being processed, each followed
    // by a check that every conversation was delivered after its last push of the round.
    let mut pushed_while_held = 0;
    for round in 0..ROUNDS {
        for p in 0..PUSHES_PER_ROUND {
            let n = round * PUSHES_PER_ROUND + p;
            let target = conversations[(n * 7 + n / 3) % conversations.len()];
            let queue = &instances[n % 2];
            // Now and then several at once, duplicates included, in one round trip.
            let batch = if n.is_multiple_of(10) {
                vec![target, conversations[n % conversations.len()], target]
            } else {
                vec![target]
            };
            if tallies[&target].active.load(Ordering::SeqCst) > 0 {
                pushed_while_held += 1;
            }
            // Numbered as it starts: a worker can take the conversation as soon as the push
            // has taken effect, before this task resumes.
            let started = sequence.fetch_add(1, Ordering::SeqCst);
            for c in &batch {
                tallies[c].last_push.fetch_max(started, Ordering::SeqCst);
            }
            queue.push(&batch).await.expect("push succeeds");
            if n.is_multiple_of(3) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let behind: Vec<_> = tallies
                .iter()
                .filter(|(_, t)| {
                    t.last_delivery.load(Ordering::SeqCst) < t.last_push.load(Ordering::SeqCst)
                })
                .map(|(c, _)| *c)
                .collect();
            if behind.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: conversations {behind:?} were never delivered after their last push"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(
        pushed_while_held > 0,
        "no push landed while its conversation was held"
    );
    // Read before stopping the workers: an aborted worker never counts itself out.
    let most_active: Vec<_> = tallies
        .iter()
        .map(|(c, t)| (*c, t.most_active.load(Ordering::SeqCst)))
        .collect();
    for worker in &workers {
        worker.abort();
    }
    for (c, most) in most_active {
        assert_eq!(
            most, 1,
            "conversation {c} was held by more than one worker at once"
        );
    }
}

async fn different_conversations_are_held_at_once(backend: &Backend) {
    let queue = backend.queue("one").await;
    let (a, b) = (conversation(), conversation());
    queue.push(&[a, b]).await.unwrap();
    let first = next_within(&queue, 5).await;
    let second = next_within(&queue, 5).await;
    let held: HashSet<_> = [first.conversation(), second.conversation()].into();
    assert_eq!(held, HashSet::from([a, b]));
    first.finish().await.unwrap();
    second.finish().await.unwrap();
}

async fn a_push_during_a_lease_leads_to_one_more_delivery_after_it(backend: &Backend) {
    let queue = backend.queue("one").await;
    let a = conversation();
    queue.push(&[a]).await.unwrap();
    let lease = next_within(&queue, 5).await;
    assert_eq!(lease.conversation(), a);

    queue.push(&[a]).await.unwrap();
    queue.push(&[a]).await.unwrap();
    // Not while it is held...
    assert_nothing_delivered(&queue, 300).await;
    lease.finish().await.unwrap();
    // ...but after: once, however many pushes came meanwhile.
    let again = next_within(&queue, 5).await;
    assert_eq!(again.conversation(), a);
    again.finish().await.unwrap();
    assert_nothing_delivered(&queue, 300).await;
}

async fn pushes_of_a_conversation_still_waiting_make_one_delivery(backend: &Backend) {
    let queue = backend.queue("one").await;
    let (a, b) = (conversation(), conversation());
    // Each webhook batch announces its conversations; a conversation no worker has taken yet
    // waits once, however often it is announced (its visit reads every pending message).
    queue.push(&[a]).await.unwrap();
    queue.push(&[a, b]).await.unwrap();
    queue.push(&[a]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
    let first = next_within(&queue, 5).await;
    let second = next_within(&queue, 5).await;
    let held: HashSet<_> = [first.conversation(), second.conversation()].into();
    assert_eq!(held, HashSet::from([a, b]));
    assert_nothing_delivered(&queue, 300).await;

    // Once taken, it is announced again: a message recorded now may come after the worker read.
    queue.push(&[a]).await.unwrap();
    first.finish().await.unwrap();
    second.finish().await.unwrap();
    let again = next_within(&queue, 5).await;
    assert_eq!(again.conversation(), a);
    again.finish().await.unwrap();
    assert_nothing_delivered(&queue, 300).await;
    assert_eq!(queue.depth().await.unwrap(), 0);
}

async fn a_lease_dropped_without_finish_is_delivered_again(backend: &Backend) {
    let queue = backend.queue("one").await;
    let a = conversation();
    queue.push(&[a]).await.unwrap();
    let lease = next_within(&queue, 5).await;
    // A worker that panics drops its lease while unwinding.
    let panicked = tokio::spawn(async move {
        let _lease = lease;
        panic!("worker failed halfway");
    })
    .await;
    assert!(panicked.is_err());
    let again = next_within(&queue, 5).await;
    assert_eq!(again.conversation(), a);
    again.finish().await.unwrap();
}

async fn two_instances_share_the_work_without_overlap(backend: &Backend) {
    const CONVERSATIONS: usize = 20;
    let instances = [backend.queue("one").await, backend.queue("two").await];
    let conversations: Vec<_> = (0..CONVERSATIONS).map(|_| conversation()).collect();
    instances[0].push(&conversations[..10]).await.unwrap();
    instances[1].push(&conversations[10..]).await.unwrap();

    // Every worker holds its lease until all conversations are held: each one is then held by
    // exactly one worker, half of them on each instance.
    let barrier = Arc::new(tokio::sync::Barrier::new(CONVERSATIONS));
    let mut workers = Vec::new();
    for (i, queue) in instances.iter().enumerate() {
        for _ in 0..CONVERSATIONS / 2 {
            let queue = queue.clone();
            let barrier = Arc::clone(&barrier);
            workers.push(tokio::spawn(async move {
                let lease = next_within(&queue, 10).await;
                let held = lease.conversation();
                tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                    .await
                    .expect("every conversation is delivered to some worker");
                lease.finish().await.unwrap();
                (i, held)
            }));
        }
    }
    let mut held = Vec::new();
    for worker in workers {
        held.push(worker.await.expect("worker succeeds"));
    }
    let distinct: HashSet<_> = held.iter().map(|(_, c)| *c).collect();
    assert_eq!(
        distinct.len(),
        CONVERSATIONS,
        "a conversation was held twice"
    );
    assert_eq!(distinct, conversations.iter().copied().collect());
    for i in 0..2 {
        assert_eq!(
            held.iter().filter(|(n, _)| *n == i).count(),
            CONVERSATIONS / 2
        );
    }
}

async fn depth_counts_announcements_waiting_for_a_worker(backend: &Backend) {
    let queue = backend.queue("one").await;
    assert_eq!(queue.depth().await.unwrap(), 0);
    queue
        .push(&[conversation(), conversation(), conversation()])
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 3);
    let lease = next_within(&queue, 5).await;
    assert_eq!(queue.depth().await.unwrap(), 2);
    lease.finish().await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
    next_within(&queue, 5).await.finish().await.unwrap();
    next_within(&queue, 5).await.finish().await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
    queue.ping().await.unwrap();
}

async fn a_cancelled_next_loses_no_announcement(backend: &Backend) {
    let queue = backend.queue("one").await;
    // Waiters give up before and while work arrives.
    for _ in 0..5 {
        assert_nothing_delivered(&queue, 20).await;
    }
    let a = conversation();
    let racing = tokio::time::timeout(Duration::from_millis(1), queue.next());
    queue.push(&[a]).await.unwrap();
    if let Ok(lease) = racing.await {
        let lease = lease.unwrap();
        assert_eq!(lease.conversation(), a);
        lease.finish().await.unwrap();
        return;
    }
    let lease = next_within(&queue, 5).await;
    assert_eq!(lease.conversation(), a);
    lease.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_settings_that_would_reclaim_from_live_holders_are_refused() {
    let Some(url) = redis_url() else {
        return;
    };
    let conn = ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap();
    let settings = QueueSettings {
        lease_ttl: Duration::from_secs(10),
        reclaim_idle: Duration::from_secs(5),
    };
    let refused = WorkQueue::redis(conn, &unique_name("parley_test_queue"), "one", settings).await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_work_held_by_a_replica_that_died_is_recovered_by_another() {
    let settings = QueueSettings {
        lease_ttl: Duration::from_millis(300),
        reclaim_idle: Duration::from_millis(800),
    };
    let Some(backend) = Backend::redis(settings).await else {
        return;
    };
    let Backend::Redis { prefix, .. } = &backend else {
        unreachable!()
    };
    let survivor = backend.queue("survivor").await;
    let a = conversation();

    // The doomed replica runs on its own runtime: shutting that down stops everything it ran
    // (dispatcher, lease renewal, connection) without releasing anything, like a killed process.
    let prefix = prefix.clone();
    let died_holding = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let held = runtime.block_on(async move {
            let url = redis_url().unwrap();
            // Its own connection, which dies with it.
            let own = ConnectionManager::new(redis::Client::open(url).unwrap())
                .await
                .unwrap();
            let doomed = WorkQueue::redis(own, &prefix, "doomed", settings)
                .await
                .unwrap();
            doomed.push(&[a]).await.unwrap();
            let lease = next_within(&doomed, 5).await;
            let held = lease.conversation();
            std::mem::forget(lease);
            held
        });
        runtime.shutdown_background();
        held
    })
    .join()
    .expect("the doomed replica took the work");
    assert_eq!(died_holding, a);

    let started = tokio::time::Instant::now();
    let recovered = next_within(&survivor, 10).await;
    assert_eq!(recovered.conversation(), a);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "recovered before the dead holder's lock could have expired"
    );
    recovered.finish().await.unwrap();
    assert_nothing_delivered(&survivor, 1200).await;

    // The dead replica's consumer, now with nothing pending, is forgotten once idle for long
    // enough (4 × reclaim_idle); the living one stays. Reclaim passes run while a worker waits.
    let waiting = {
        let survivor = survivor.clone();
        tokio::spawn(async move { survivor.next().await.map(|l| l.conversation()) })
    };
    let Backend::Redis { conn, prefix, .. } = &backend else {
        unreachable!()
    };
    let stream = format!("{prefix}:q:stream");
    let consumers = || async {
        let reply: redis::streams::StreamInfoConsumersReply = conn
            .clone()
            .xinfo_consumers(&stream, "workers")
            .await
            .unwrap();
        let mut names: Vec<String> = reply.consumers.into_iter().map(|c| c.name).collect();
        names.sort();
        names
    };
    assert_eq!(consumers().await, ["doomed", "survivor"]);
    tokio::time::timeout(Duration::from_secs(15), async {
        while consumers().await != ["survivor"] {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the dead replica's consumer is forgotten");
    waiting.abort();
    backend.cleanup().await;
}

/// A `redis-server` of the test's own on a free port, so it can be killed and restarted
/// without disturbing the shared one.
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// `None` (with the reason printed) when `redis-server` is not installed, unless services
    /// are required.
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self { port, child: None };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e) if !services_required() => {
                eprintln!("skipping: cannot start a private redis-server ({e})");
                None
            }
            Err(e) => panic!("PARLEY_REQUIRE_SERVICES=1 but redis-server cannot start: {e}"),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "redis-server did not start listening",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server restarts");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Retries `op` until it succeeds, for up to `secs` seconds.
async fn eventually<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    secs: u64,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("still failing: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_queue_memory_and_live_events_keep_working_after_a_redis_restart() {
    if redis_url().is_none() {
        return;
    }
    let Some(mut server) = PrivateRedis::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let conn = ConnectionManager::new(client.clone()).await.unwrap();
    let prefix = unique_name("parley_test_restart");
    let queue = WorkQueue::redis(conn.clone(), &prefix, "one", QueueSettings::default())
        .await
        .unwrap();
    let memory = Memory::redis(conn.clone(), &prefix, MemorySettings::default());
    let live = LiveEvents::redis(client.clone(), &prefix).await.unwrap();
    let (a, b) = (conversation(), conversation());

    queue.push(&[a]).await.unwrap();
    next_within(&queue, 5).await.finish().await.unwrap();
    let turn = |text: &str| Turn {
        role: TurnRole::Prospect,
        text: text.to_owned(),
        at_ms: 1,
    };
    memory.append(a, turn("before")).await.unwrap();

    // A worker is already waiting when Redis goes away, and keeps waiting through it.
    let waiting = {
        let queue = queue.clone();
        tokio::spawn(async move { next_within(&queue, 30).await.conversation() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.restart();

    // The restarted server has lost everything (no persistence): the stream, its group, the
    // scripts. Pushes work again once the connection is back, and reach the waiting worker.
    let pushed = [b];
    eventually(15, || queue.push(&pushed)).await;
    assert_eq!(waiting.await.expect("the waiting worker got work"), b);
    eventually(15, || memory.append(b, turn("after"))).await;
    assert_eq!(memory.recent(b).await.unwrap(), vec![turn("after")]);

    let mut events = live.subscribe("conversation:b");
    let received = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            live.publish("conversation:b", &serde_json::json!({"n": 1}))
                .await
                .ok();
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(200), events.next()).await
            {
                return event;
            }
        }
    })
    .await
    .expect("live events flow again after the restart");
    assert_eq!(received, serde_json::json!({"n": 1}));
}
