//! The Redis work queue, shared by every replica.
//!
//! Keys (all under the configured prefix):
//! - `<prefix>:q:stream`: a stream of announcements (`c` = conversation id), consumer group
//!   `workers`. An entry stays pending with its consumer until the lease it produced finishes;
//!   every acknowledgement also deletes the entry, so the stream holds only live work.
//! - `<prefix>:q:queued:<conversation>`: set while the conversation has an announcement in the
//!   stream that no worker has taken yet. A push finding it set adds nothing: like the in-process
//!   queue, a conversation waits in the queue at most once, however many webhooks announce it
//!   meanwhile (one visit reads all its pending messages). Taking the announcement clears it,
//!   before the worker reads, so a message recorded after that is announced again. It carries a
//!   TTL (`reclaim_idle`) as a safety net: if it ever outlived its entry, pushes would resume then.
//! - `<prefix>:q:lock:<conversation>`: a hash `{t: token, d: dirty}` with a TTL, the
//!   conversation's exclusive lock. The dirty mark lives inside the lock on purpose: it can
//!   never outlive it, and when a holder dies the mark expires with the lock while the holder's
//!   own pending entry (reclaimed after `reclaim_idle`) delivers the conversation again.
//!
//! Every step that decides something is one Lua script, so it is atomic:
//! - push: for each conversation not already waiting, mark it waiting and add its announcement;
//! - acquire: if the entry is still pending for us and the lock is free, take the lock; if
//!   another holder has it, set its dirty mark and acknowledge the entry (coalesced);
//! - renew: if the token still matches, extend the lock and reset the entry's idle time (so it
//!   is not reclaimed from a live holder);
//! - release: if the lock is ours (or expired and free), delete it, acknowledge the entry, and
//!   announce again when dirty (or when the lease was abandoned).
//!
//! One dispatcher task per queue reads only as many entries as there are waiting workers and
//! hands out leases over a channel, which makes [`RedisQueue::next`] cancel-safe. It does not use
//! `XREADGROUP BLOCK`: the connection is a shared, multiplexed `ConnectionManager`, and a blocked
//! command would stall every other command on it (pushes from webhooks, renewals, memory). It
//! polls instead, from 2 ms up to 50 ms while idle, and a push from this process wakes it at
//! once. One renewer task per queue renews all held locks in one pipeline every `lease_ttl / 3`.
//! Each reclaim pass also forgets the group's consumers that have nothing pending and have not
//! read for `4 × reclaim_idle` (replicas that are gone), so per-start consumer names do not pile
//! up.
//!
//! Limits: a holder cut off from Redis for longer than `lease_ttl` loses its lock and another
//! worker may start on the same conversation (it logs a warning). If Redis loses its data (a
//! restart without persistence), announcements made before are gone; the pending messages are
//! still in SQL, so start-up must announce them again.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadOptions,
    StreamReadReply,
};
use redis::{AsyncCommands, ErrorKind, RedisError, RedisResult, Script, Value};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{Held as LeaseHeld, Lease, QueueError, QueueSettings};
use crate::domain::ConversationId;

const GROUP: &str = "workers";
const FIELD: &str = "c";
/// Most entries read or claimed in one round trip.
const MAX_BATCH: usize = 64;
/// Most renewals sent in one pipeline.
const RENEW_CHUNK: usize = 512;
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A consumer with nothing pending that has not read for this many `reclaim_idle` is forgotten.
const PRUNE_AFTER_RECLAIMS: u64 = 4;
/// Leases handed out but not yet taken; bounded by the number of waiting workers in practice.
const CHANNEL_CAPACITY: usize = 1024;

/// KEYS: stream, then each conversation's waiting mark. ARGV: mark ttl ms, then the conversation
/// ids in the order of their marks. Returns how many announcements it added.
const PUSH: &str = r"
local added = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'c', ARGV[i])
    added = added + 1
  end
end
return added
";

/// KEYS: lock, stream, waiting mark. ARGV: group, entry id, token, ttl ms, consumer.
/// Returns 1 (acquired), 0 (held by another: marked dirty, entry acknowledged), 2 (the entry is
/// no longer pending for this consumer: someone else has it, nothing to do). Either of the first
/// two takes the announcement, so the conversation is no longer waiting.
const ACQUIRE: &str = r"
local pending = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[5])
if #pending == 0 then return 2 end
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 't', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
redis.call('HSET', KEYS[1], 'd', '1')
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return 0
";

/// KEYS: lock, stream. ARGV: token, ttl ms, group, consumer, entry id. Returns 1 if renewed.
const RENEW: &str = r"
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
return 1
";

/// KEYS: lock, stream, waiting mark. ARGV: token, group, entry id, conversation, requeue (0 or
/// 1), mark ttl ms. Returns 0 (another holder has the lock now: left alone), 1 (released), 2
/// (released and announced again, unless an announcement already waits).
const RELEASE: &str = r"
local token = redis.call('HGET', KEYS[1], 't')
if token and token ~= ARGV[1] then return 0 end
local dirty = redis.call('HGET', KEYS[1], 'd')
redis.call('DEL', KEYS[1])
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
if dirty or ARGV[5] == '1' then
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[6]) then
    redis.call('XADD', KEYS[2], '*', 'c', ARGV[4])
  end
  return 2
end
return 1
";

/// KEYS: stream. ARGV: group, idle ms, own consumer name. Deletes the group's consumers that have
/// nothing pending and have not been seen for the idle time (replicas that are gone: each start
/// may use a new consumer name). Checked and deleted atomically, so no pending entry is lost; a
/// consumer that reads again is recreated by Redis. Returns how many were deleted.
const PRUNE: &str = r"
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[2]) and fields['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
";

/// The Redis queue. Clones share one dispatcher (one consumer).
#[derive(Clone)]
pub struct RedisQueue {
    core: Arc<Core>,
    leases: Arc<tokio::sync::Mutex<mpsc::Receiver<Held>>>,
    _dispatcher: Arc<AbortOnDrop>,
}

struct Core {
    conn: ConnectionManager,
    stream: String,
    lock_prefix: String,
    queued_prefix: String,
    consumer: String,
    settings: QueueSettings,
    push: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    prune: Script,
    /// Workers inside `next()`: the dispatcher reads only this many entries (less the leases
    /// already waiting in the channel).
    waiting: AtomicUsize,
    /// Wakes the dispatcher: demand changed, or this process pushed.
    wake: Notify,
    held: Mutex<HashMap<u64, HeldInfo>>,
    next_held: AtomicU64,
}

#[derive(Clone)]
struct HeldInfo {
    conversation: ConversationId,
    entry_id: String,
    token: String,
}

/// Aborts a background task when the last owner goes away.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Core {
    fn held(&self) -> MutexGuard<'_, HashMap<u64, HeldInfo>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_key(&self, conversation: ConversationId) -> String {
        format!("{}{}", self.lock_prefix, conversation)
    }

    fn queued_key(&self, conversation: ConversationId) -> String {
        format!("{}{}", self.queued_prefix, conversation)
    }

    /// How long a waiting mark lives (see the module documentation).
    fn queued_ttl(&self) -> String {
        millis(self.settings.reclaim_idle).to_string()
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn ensure_group(&self) -> RedisResult<()> {
        // From id 0: entries are deleted once acknowledged, so whatever is in the stream when
        // the group is (re)created is unprocessed work.
        let created: RedisResult<()> = self
            .conn()
            .xgroup_create_mkstream(&self.stream, GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    async fn release(&self, info: &HeldInfo, requeue: bool) -> RedisResult<i64> {
        self.release
            .key(self.lock_key(info.conversation))
            .key(&self.stream)
            .key(self.queued_key(info.conversation))
            .arg(&info.token)
            .arg(GROUP)
            .arg(&info.entry_id)
            .arg(info.conversation.to_string())
            .arg(if requeue { "1" } else { "0" })
            .arg(self.queued_ttl())
            .invoke_async(&mut self.conn())
            .await
    }
}

fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one script many times in one pipeline, loading it first if Redis lost its script cache
/// (after a restart). Every call in the pipeline uses the same script, so a NOSCRIPT reply
/// means none of them ran and retrying is safe.
async fn run_script_batch(
    conn: &mut ConnectionManager,
    script: &Script,
    calls: &[(Vec<String>, Vec<String>)],
) -> RedisResult<Vec<Value>> {
    let build = || {
        let mut pipe = redis::pipe();
        for (keys, args) in calls {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args);
        }
        pipe
    };
    match build().query_async(conn).await {
        Err(e) if e.kind() == ErrorKind::NoScriptError => {
            script.load_async(conn).await?;
            build().query_async(conn).await
        }
        other => other,
    }
}

impl RedisQueue {
    pub(super) async fn new(
        conn: ConnectionManager,
        key_prefix: &str,
        consumer_name: &str,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        if settings.lease_ttl < Duration::from_millis(30) {
            return Err(QueueError::Settings(format!(
                "lease_ttl is {:?}; it must be at least 30ms",
                settings.lease_ttl
            )));
        }
        if settings.reclaim_idle <= settings.lease_ttl {
            return Err(QueueError::Settings(format!(
                "reclaim_idle ({:?}) must be longer than lease_ttl ({:?}), or live holders lose \
                 their work to reclaiming consumers",
                settings.reclaim_idle, settings.lease_ttl
            )));
        }
        if consumer_name.is_empty() {
            return Err(QueueError::Settings(
                "the consumer name must not be empty".to_owned(),
            ));
        }
        let core = Arc::new(Core {
            conn,
            stream: format!("{key_prefix}:q:stream"),
            lock_prefix: format!("{key_prefix}:q:lock:"),
            queued_prefix: format!("{key_prefix}:q:queued:"),
            consumer: consumer_name.to_owned(),
            settings,
            push: Script::new(PUSH),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            prune: Script::new(PRUNE),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            held: Mutex::new(HashMap::new()),
            next_held: AtomicU64::new(0),
        });
        core.ensure_group().await?;

        let renewer = Arc::new(AbortOnDrop(
            tokio::spawn(renew_loop(Arc::clone(&core))).abort_handle(),
        ));
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let dispatcher = Dispatcher {
            core: Arc::clone(&core),
            renewer,
            tx,
        };
        let dispatcher = Arc::new(AbortOnDrop(tokio::spawn(dispatcher.run()).abort_handle()));
        Ok(Self {
            core,
            leases: Arc::new(tokio::sync::Mutex::new(rx)),
            _dispatcher: dispatcher,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conversations = conversations.len()))]
    pub(super) async fn push(&self, conversations: &[ConversationId]) -> Result<(), QueueError> {
        if conversations.is_empty() {
            return Ok(());
        }
        let mut push = self.core.push.prepare_invoke();
        push.key(&self.core.stream).arg(self.core.queued_ttl());
        for conversation in conversations {
            push.key(self.core.queued_key(*conversation))
                .arg(conversation.to_string());
        }
        let added: u64 = push.invoke_async(&mut self.core.conn()).await?;
        if added > 0 {
            self.core.wake.notify_one();
        }
        Ok(())
    }

    pub(super) async fn next(&self) -> Result<Lease, QueueError> {
        let _waiting = Waiting::new(&self.core);
        let mut leases = self.leases.lock().await;
        let held = leases.recv().await.ok_or(QueueError::Closed)?;
        Ok(Lease {
            conversation: held.info.conversation,
            held: LeaseHeld::Redis(held),
        })
    }

    pub(super) async fn depth(&self) -> Result<u64, QueueError> {
        let query = || async {
            let (len, pending): (u64, StreamPendingReply) = redis::pipe()
                .xlen(&self.core.stream)
                .xpending(&self.core.stream, GROUP)
                .query_async(&mut self.core.conn())
                .await?;
            Ok::<_, RedisError>(len.saturating_sub(pending.count() as u64))
        };
        match query().await {
            Err(e) if is_nogroup(&e) => {
                self.core.ensure_group().await?;
                Ok(query().await?)
            }
            other => Ok(other?),
        }
    }

    pub(super) async fn ping(&self) -> Result<(), QueueError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.core.conn())
            .await?;
        Ok(())
    }
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("stream", &self.core.stream)
            .field("consumer", &self.core.consumer)
            .finish_non_exhaustive()
    }
}

/// Counts a worker waiting in `next()` for as long as the future lives.
struct Waiting<'a>(&'a Core);

impl<'a> Waiting<'a> {
    fn new(core: &'a Core) -> Self {
        core.waiting.fetch_add(1, Ordering::SeqCst);
        core.wake.notify_one();
        Self(core)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The background task that turns stream entries into leases.
struct Dispatcher {
    core: Arc<Core>,
    /// Keeps the renewer alive while the dispatcher (and so the queue) lives; leases hold it too.
    renewer: Arc<AbortOnDrop>,
    tx: mpsc::Sender<Held>,
}

struct Announcement {
    id: String,
    conversation: Option<ConversationId>,
}

impl Announcement {
    fn parse(entry: StreamId) -> Self {
        let conversation = entry
            .map
            .get(FIELD)
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .and_then(|s| ConversationId::parse(&s).ok());
        Self {
            id: entry.id,
            conversation,
        }
    }
}

impl Dispatcher {
    async fn run(self) {
        let reclaim_every = (self.core.settings.reclaim_idle / 2).max(Duration::from_millis(50));
        // Reclaim at start: entries this consumer name read before a restart come back at once
        // they have been idle long enough.
        let mut next_reclaim = Instant::now();
        let mut claim_cursor = "0-0".to_owned();
        let mut poll = POLL_MIN;
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(demand) = self.demand().await else {
                return;
            };
            let reclaim = Instant::now() >= next_reclaim;
            match self.step(demand, reclaim, &mut claim_cursor).await {
                Ok(step) => {
                    backoff = BACKOFF_MIN;
                    if reclaim && !step.more_to_reclaim {
                        next_reclaim = Instant::now() + reclaim_every;
                        self.prune_consumers().await;
                    }
                    if step.found || step.more_to_reclaim {
                        poll = POLL_MIN;
                    } else {
                        tokio::select! {
                            () = self.core.wake.notified() => {}
                            () = tokio::time::sleep(poll) => {}
                        }
                        poll = (poll * 2).min(POLL_MAX);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = millis(backoff),
                        "work queue: redis error while fetching work; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    if is_nogroup(&e)
                        && let Err(e) = self.core.ensure_group().await
                    {
                        tracing::warn!(error = %e, "work queue: cannot recreate the consumer group");
                    }
                }
            }
        }
    }

    /// Forgets consumers of replicas that are gone, once they have nothing pending. Only
    /// housekeeping: a failure is logged and tried again at the next reclaim.
    async fn prune_consumers(&self) {
        let idle = millis(self.core.settings.reclaim_idle).saturating_mul(PRUNE_AFTER_RECLAIMS);
        let pruned: RedisResult<i64> = self
            .core
            .prune
            .key(&self.core.stream)
            .arg(GROUP)
            .arg(idle)
            .arg(&self.core.consumer)
            .invoke_async(&mut self.core.conn())
            .await;
        match pruned {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                "work queue: forgot consumers of replicas that are gone"
            ),
            Err(e) => tracing::warn!(error = %e, "work queue: cannot prune idle consumers"),
        }
    }

    /// Waits until some worker waits for a lease that is not already in the channel. `None`
    /// when the queue is gone.
    async fn demand(&self) -> Option<usize> {
        loop {
            let notified = self.core.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.tx.is_closed() {
                return None;
            }
            let buffered = self.tx.max_capacity() - self.tx.capacity();
            let demand = self
                .core
                .waiting
                .load(Ordering::SeqCst)
                .saturating_sub(buffered);
            if demand > 0 {
                return Some(demand.min(MAX_BATCH));
            }
            notified.await;
        }
    }

    async fn step(&self, demand: usize, reclaim: bool, cursor: &mut String) -> RedisResult<Step> {
        let mut step = Step::default();
        let mut entries = Vec::new();
        if reclaim {
            let reply: StreamAutoClaimReply = self
                .core
                .conn()
                .xautoclaim_options(
                    &self.core.stream,
                    GROUP,
                    &self.core.consumer,
                    millis(self.core.settings.reclaim_idle),
                    cursor.as_str(),
                    StreamAutoClaimOptions::default().count(demand),
                )
                .await?;
            step.more_to_reclaim = reply.next_stream_id != "0-0";
            *cursor = reply.next_stream_id;
            if !reply.claimed.is_empty() {
                tracing::info!(
                    entries = reply.claimed.len(),
                    "work queue: reclaimed announcements left idle by another consumer"
                );
            }
            entries.extend(reply.claimed.into_iter().map(Announcement::parse));
        }
        if entries.is_empty() {
            let options = StreamReadOptions::default()
                .group(GROUP, &self.core.consumer)
                .count(demand);
            let reply: Option<StreamReadReply> = self
                .core
                .conn()
                .xread_options(&[&self.core.stream], &[">"], &options)
                .await?;
            entries.extend(
                reply
                    .into_iter()
                    .flat_map(|r| r.keys)
                    .flat_map(|k| k.ids)
                    .map(Announcement::parse),
            );
        }
        if entries.is_empty() {
            return Ok(step);
        }
        step.found = true;
        self.acquire(entries).await?;
        Ok(step)
    }

    /// Takes the locks for `entries` in one pipeline and hands out the leases acquired.
    async fn acquire(&self, entries: Vec<Announcement>) -> RedisResult<()> {
        let (valid, invalid): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| e.conversation.is_some());
        if !invalid.is_empty() {
            tracing::warn!(
                entries = invalid.len(),
                "work queue: dropping stream entries without a conversation id"
            );
            let ids: Vec<&str> = invalid.iter().map(|e| e.id.as_str()).collect();
            let () = redis::pipe()
                .xack(&self.core.stream, GROUP, &ids)
                .ignore()
                .xdel(&self.core.stream, &ids)
                .ignore()
                .query_async(&mut self.core.conn())
                .await?;
        }
        if valid.is_empty() {
            return Ok(());
        }
        let ttl = millis(self.core.settings.lease_ttl).to_string();
        let candidates: Vec<HeldInfo> = valid
            .into_iter()
            .filter_map(|e| {
                Some(HeldInfo {
                    conversation: e.conversation?,
                    entry_id: e.id,
                    token: uuid::Uuid::new_v4().simple().to_string(),
                })
            })
            .collect();
        let calls: Vec<_> = candidates
            .iter()
            .map(|c| {
                (
                    vec![
                        self.core.lock_key(c.conversation),
                        self.core.stream.clone(),
                        self.core.queued_key(c.conversation),
                    ],
                    vec![
                        GROUP.to_owned(),
                        c.entry_id.clone(),
                        c.token.clone(),
                        ttl.clone(),
                        self.core.consumer.clone(),
                    ],
                )
            })
            .collect();
        // If this fails after Redis ran the scripts, the locks expire unrenewed within
        // `lease_ttl` and the entries, still pending, are reclaimed after `reclaim_idle`.
        let results = run_script_batch(&mut self.core.conn(), &self.core.acquire, &calls).await?;
        for (info, result) in candidates.into_iter().zip(results) {
            match result {
                Value::Int(1) => {
                    let held = Held::new(&self.core, &self.renewer, info);
                    if self.tx.send(held).await.is_err() {
                        // The queue is gone; dropping the lease released it.
                        return Ok(());
                    }
                }
                Value::Int(0) => tracing::debug!(
                    conversation.id = %info.conversation,
                    "work queue: conversation busy; its holder will run it again"
                ),
                _ => tracing::debug!(
                    conversation.id = %info.conversation,
                    "work queue: announcement taken over by another consumer"
                ),
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Step {
    found: bool,
    more_to_reclaim: bool,
}

async fn renew_loop(core: Arc<Core>) {
    let every = core.settings.lease_ttl / 3;
    let ttl = millis(core.settings.lease_ttl).to_string();
    let mut conn = core.conn();
    loop {
        tokio::time::sleep(every).await;
        let held: Vec<(u64, HeldInfo)> = core
            .held()
            .iter()
            .map(|(id, info)| (*id, info.clone()))
            .collect();
        for chunk in held.chunks(RENEW_CHUNK) {
            let calls: Vec<_> = chunk
                .iter()
                .map(|(_, info)| {
                    (
                        vec![core.lock_key(info.conversation), core.stream.clone()],
                        vec![
                            info.token.clone(),
                            ttl.clone(),
                            GROUP.to_owned(),
                            core.consumer.clone(),
                            info.entry_id.clone(),
                        ],
                    )
                })
                .collect();
            match run_script_batch(&mut conn, &core.renew, &calls).await {
                Ok(results) => {
                    for ((id, info), result) in chunk.iter().zip(results) {
                        if result != Value::Int(1) && core.held().remove(id).is_some() {
                            tracing::warn!(
                                conversation.id = %info.conversation,
                                "work queue: lease lost before renewal; another worker may \
                                 run this conversation"
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    leases = chunk.len(),
                    "work queue: lease renewal failed; retrying at the next interval"
                ),
            }
        }
    }
}

/// The Redis half of a [`Lease`]: renewed in the background while it lives, released on finish,
/// released and announced again when dropped unfinished.
pub(super) struct Held {
    core: Arc<Core>,
    _renewer: Arc<AbortOnDrop>,
    id: u64,
    info: HeldInfo,
    released: bool,
}

impl Held {
    fn new(core: &Arc<Core>, renewer: &Arc<AbortOnDrop>, info: HeldInfo) -> Self {
        let id = core.next_held.fetch_add(1, Ordering::Relaxed);
        core.held().insert(id, info.clone());
        Self {
            core: Arc::clone(core),
            _renewer: Arc::clone(renewer),
            id,
            info,
            released: false,
        }
    }

    pub(super) async fn finish(mut self) -> Result<(), QueueError> {
        let result = self.core.release(&self.info, false).await;
        match result {
            Ok(outcome) => {
                self.released = true;
                if outcome == 0 {
                    tracing::warn!(
                        conversation.id = %self.info.conversation,
                        "work queue: lease had expired and another worker holds the conversation"
                    );
                }
                Ok(())
            }
            // Drop releases it again and announces the conversation; failing that, the lock
            // expires and the entry is reclaimed.
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.core.held().remove(&self.id);
        if self.released {
            return;
        }
        let conversation = self.info.conversation;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                conversation.id = %conversation,
                "work queue: lease dropped outside a runtime; it expires after lease_ttl"
            );
            return;
        };
        tracing::warn!(
            conversation.id = %conversation,
            "work queue: lease dropped without finish; announcing the conversation again"
        );
        let core = Arc::clone(&self.core);
        let info = self.info.clone();
        runtime.spawn(async move {
            if let Err(e) = core.release(&info, true).await {
                tracing::warn!(
                    conversation.id = %info.conversation,
                    error = %e,
                    "work queue: releasing an abandoned lease failed; it expires after lease_ttl"
                );
            }
        });
    }
}
