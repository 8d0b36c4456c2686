//! The per-conversation ordered work queue, in-process or in Redis.
//!
//! The durable truth is in SQL (inbound messages with a pending flag); the queue only announces
//! "conversation X has work". A worker calls [`WorkQueue::next`], which hands out a [`Lease`]: the
//! exclusive ownership of one conversation, across every worker and every replica. The worker
//! processes all of that conversation's pending messages from the database in order, then calls
//! [`Lease::finish`].
//!
//! Guarantees, for both backends (one conformance suite, `tests/it/backends_queue.rs`):
//! - a conversation is never held by two leases at once (for Redis: as long as the holder keeps
//!   renewing, i.e. it is alive and reaches Redis within `lease_ttl`);
//! - different conversations are handed out in parallel;
//! - a push that arrives while a conversation is held leads to another delivery after the
//!   holder finishes (pushes may coalesce, never get lost);
//! - a lease dropped without `finish` (a panicking worker) releases the conversation and
//!   announces it again; with Redis, work held or read by a replica that died is recovered once
//!   its lock expires (`lease_ttl`) and its stream entry has been idle for `reclaim_idle`.
//!
//! A delivery may be spurious (nothing left pending): workers must cope with an empty batch.

mod inprocess;
mod redis;

use std::fmt;
use std::time::Duration;

use crate::domain::ConversationId;

pub use inprocess::InProcessQueue;
pub use redis::RedisQueue;

/// The work queue: one variant per backend, chosen by configuration (`REDIS_URL`).
///
/// Cloning is cheap and shares the queue (every clone is the same consumer).
#[derive(Clone, Debug)]
pub enum WorkQueue {
    InProcess(InProcessQueue),
    Redis(RedisQueue),
}

/// Timings of the Redis backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a conversation lock lives without renewal; holders renew it every third of
    /// this. A replica that dies holds its conversations at most this long.
    pub lease_ttl: Duration,
    /// How long a read but unfinished announcement stays with its consumer before another
    /// consumer takes it over. Must be longer than `lease_ttl`.
    pub reclaim_idle: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            reclaim_idle: Duration::from_secs(60),
        }
    }
}

/// What can go wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("work queue backend error: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("invalid work queue settings: {0}")]
    Settings(String),
    #[error("the work queue has shut down")]
    Closed,
}

impl WorkQueue {
    /// The embedded queue: state lives in this process only.
    pub fn in_process() -> Self {
        Self::InProcess(InProcessQueue::new())
    }

    /// The Redis queue, shared by every replica using the same `key_prefix`. Creates the stream
    /// and its consumer group when absent. `consumer_name` must be unique per replica (a host
    /// name or a random id); a replica restarted under the same name recovers its own entries.
    pub async fn redis(
        conn: ::redis::aio::ConnectionManager,
        key_prefix: &str,
        consumer_name: &str,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        RedisQueue::new(conn, key_prefix, consumer_name, settings)
            .await
            .map(Self::Redis)
    }

    /// Announces that each of `conversations` has work (one round trip for all of them).
    pub async fn push(&self, conversations: &[ConversationId]) -> Result<(), QueueError> {
        match self {
            Self::InProcess(q) => {
                q.push(conversations);
                Ok(())
            }
            Self::Redis(q) => q.push(conversations).await,
        }
    }

    /// Waits for a conversation with work and returns its exclusive lease. Cancel-safe: dropping
    /// the future loses no announcement.
    pub async fn next(&self) -> Result<Lease, QueueError> {
        match self {
            Self::InProcess(q) => Ok(q.next().await),
            Self::Redis(q) => q.next().await,
        }
    }

    /// Announcements waiting for a worker (not counting conversations being processed).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        match self {
            Self::InProcess(q) => Ok(q.depth()),
            Self::Redis(q) => q.depth().await,
        }
    }

    /// Checks that the backend answers (readiness).
    pub async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Self::InProcess(_) => Ok(()),
            Self::Redis(q) => q.ping().await,
        }
    }
}

/// Exclusive ownership of one conversation until [`Lease::finish`] (or drop).
///
/// Dropping a lease without finishing it releases the conversation and announces it again, so a
/// worker that panics halfway leaves its work to the next one.
pub struct Lease {
    conversation: ConversationId,
    held: Held,
}

enum Held {
    InProcess(inprocess::Held),
    Redis(redis::Held),
}

impl Lease {
    /// The conversation this lease owns.
    pub fn conversation(&self) -> ConversationId {
        self.conversation
    }

    /// Releases the conversation. If it was announced again while held, it is delivered again.
    pub async fn finish(self) -> Result<(), QueueError> {
        match self.held {
            Held::InProcess(h) => {
                h.finish();
                Ok(())
            }
            Held::Redis(h) => h.finish().await,
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("conversation", &self.conversation)
            .finish_non_exhaustive()
    }
}
