//! Live-update fan-out to server-sent-event listeners (the web chat, the staff inbox):
//! in-process, or through Redis pub/sub so that an event published on one replica reaches the
//! listeners connected to every replica.
//!
//! Topics are plain strings such as `conversation:<uuid>` or `handoffs:<tenant>`; events are
//! JSON values. Delivery is best effort and live only: there is no history, a listener sees what
//! is published while it is subscribed, and a listener that reads too slowly misses events
//! (it is lagged) rather than slowing down publishers. Listeners re-read state from the API when
//! they (re)connect. Both variants pass one conformance suite (`tests/it/backends_broadcast.rs`).

mod hub;
mod inprocess;
mod redis;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use hub::Hub;
pub use inprocess::InProcessLive;
pub use redis::RedisLive;

/// The live-event fan-out: one variant per backend, chosen by configuration (`REDIS_URL`).
/// Cloning is cheap and shares it (and, for Redis, its one pub/sub connection).
#[derive(Clone, Debug)]
pub enum LiveEvents {
    InProcess(InProcessLive),
    Redis(RedisLive),
}

/// What can go wrong publishing or connecting.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("live events backend error: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("a live event could not be encoded: {0}")]
    Json(#[from] serde_json::Error),
}

impl LiveEvents {
    /// The embedded fan-out: events reach subscribers of this process only.
    pub fn in_process() -> Self {
        Self::InProcess(InProcessLive::new())
    }

    /// The Redis fan-out: one pub/sub connection for the whole process (`PSUBSCRIBE
    /// <prefix>:live:*`), fanned out locally, reconnecting with backoff if Redis goes away.
    /// Events published while the connection is down are not seen by this process.
    pub async fn redis(client: ::redis::Client, key_prefix: &str) -> Result<Self, LiveError> {
        RedisLive::new(client, key_prefix).await.map(Self::Redis)
    }

    /// Sends `event` to every current subscriber of `topic`, on every replica.
    pub async fn publish(&self, topic: &str, event: &serde_json::Value) -> Result<(), LiveError> {
        self.publish_all(topic, std::slice::from_ref(event)).await
    }

    /// Sends `events`, in order, to every current subscriber of `topic`, on every replica (with
    /// Redis, in one round trip).
    pub async fn publish_all(
        &self,
        topic: &str,
        events: &[serde_json::Value],
    ) -> Result<(), LiveError> {
        match self {
            Self::InProcess(live) => {
                for event in events {
                    live.publish(topic, event);
                }
                Ok(())
            }
            Self::Redis(live) => live.publish_all(topic, events).await,
        }
    }

    /// Starts listening to `topic`. Events published after this call returns are delivered.
    pub fn subscribe(&self, topic: &str) -> LiveSubscription {
        match self {
            Self::InProcess(live) => live.hub().subscribe(topic),
            Self::Redis(live) => live.hub().subscribe(topic),
        }
    }
}

/// The events of one topic, as a [`Stream`]. Ends only when the fan-out is dropped; skips
/// (and logs) events missed because the reader fell behind.
pub struct LiveSubscription {
    events: BroadcastStream<serde_json::Value>,
    hub: Arc<Hub>,
    topic: String,
}

impl Stream for LiveSubscription {
    type Item = serde_json::Value;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.events).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    tracing::debug!(missed, "live events: a slow subscriber missed events");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for LiveSubscription {
    fn drop(&mut self) {
        self.hub.unsubscribed(&self.topic);
    }
}

impl std::fmt::Debug for LiveSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSubscription")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}
