//! The Redis fan-out. Each process holds one pub/sub connection with one pattern subscription,
//! `<prefix>:live:*`, and hands every message to its local subscribers of that topic; publishing
//! is a `PUBLISH <prefix>:live:<topic>` on an ordinary connection. The listener task reconnects
//! with backoff when the connection drops (a Redis restart) and pings it regularly, so a
//! connection that died silently is noticed too.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSub};
use redis::{Client, Msg};
use tokio::task::AbortHandle;

use super::LiveError;
use super::hub::Hub;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis fan-out. Clones share the connections and the listener task.
#[derive(Clone)]
pub struct RedisLive {
    conn: ConnectionManager,
    channel_prefix: String,
    hub: Arc<Hub>,
    _listener: Arc<AbortOnDrop>,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Escapes the glob characters of `s` for a `PSUBSCRIBE` pattern.
fn glob_escape(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl RedisLive {
    pub(super) async fn new(client: Client, key_prefix: &str) -> Result<Self, LiveError> {
        let channel_prefix = format!("{key_prefix}:live:");
        let pattern = format!("{}*", glob_escape(&channel_prefix));
        let conn = client.get_connection_manager().await?;
        // The first subscription is made here, so that a subscriber created after this returns
        // sees every event published after that.
        let pubsub = subscribe(&client, &pattern).await?;
        let hub = Arc::new(Hub::default());
        let listener = Listener {
            client,
            pattern,
            channel_prefix: channel_prefix.clone(),
            hub: Arc::clone(&hub),
        };
        let task = tokio::spawn(listener.run(pubsub));
        Ok(Self {
            conn,
            channel_prefix,
            hub,
            _listener: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }

    pub(super) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Publishes the events in order, in one round trip (a pipeline).
    pub(super) async fn publish_all(
        &self,
        topic: &str,
        events: &[serde_json::Value],
    ) -> Result<(), LiveError> {
        if events.is_empty() {
            return Ok(());
        }
        let channel = format!("{}{topic}", self.channel_prefix);
        let mut pipeline = redis::pipe();
        for event in events {
            pipeline
                .publish(&channel, serde_json::to_string(event)?)
                .ignore();
        }
        let () = pipeline.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}

impl fmt::Debug for RedisLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLive")
            .field("channel_prefix", &self.channel_prefix)
            .finish_non_exhaustive()
    }
}

async fn subscribe(client: &Client, pattern: &str) -> redis::RedisResult<PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(pattern).await?;
    Ok(pubsub)
}

struct Listener {
    client: Client,
    pattern: String,
    channel_prefix: String,
    hub: Arc<Hub>,
}

impl Listener {
    async fn run(self, first: PubSub) {
        let mut pubsub = Some(first);
        let mut backoff = BACKOFF_MIN;
        loop {
            let connection = match pubsub.take() {
                Some(connection) => connection,
                None => match subscribe(&self.client, &self.pattern).await {
                    Ok(connection) => {
                        tracing::info!("live events: pub/sub connection re-established");
                        backoff = BACKOFF_MIN;
                        connection
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                            "live events: cannot reach redis pub/sub; retrying"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                },
            };
            self.listen(connection).await;
            tracing::warn!("live events: pub/sub connection lost; reconnecting");
        }
    }

    /// Hands messages to the hub until the connection ends or stops answering pings.
    async fn listen(&self, connection: PubSub) {
        let (mut sink, mut messages) = connection.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => self.deliver(&message),
                    None => return,
                },
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    fn deliver(&self, message: &Msg) {
        let channel = message.get_channel_name();
        let Some(topic) = channel.strip_prefix(&self.channel_prefix) else {
            return;
        };
        match serde_json::from_slice(message.get_payload_bytes()) {
            Ok(event) => self.hub.deliver(topic, event),
            Err(e) => tracing::warn!(
                error = %e,
                "live events: ignoring a message that is not JSON"
            ),
        }
    }
}
