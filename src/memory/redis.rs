//! The Redis memory store, shared by every replica. Per conversation, under the prefix:
//! `<prefix>:mem:<conversation>:turns` (a list of JSON turns, oldest first),
//! `<prefix>:mem:<conversation>:summary` (a string) and `<prefix>:mem:<conversation>:facts` (a
//! hash). Every write is one `MULTI` pipeline that also refreshes the TTL of all three keys, so a
//! conversation's memory expires as a whole.

use std::collections::BTreeMap;
use std::fmt;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Pipeline};

use super::{MemoryError, MemorySettings, Turn};
use crate::domain::ConversationId;

/// The Redis store. Clones share the connection.
#[derive(Clone)]
pub struct RedisMemory {
    conn: ConnectionManager,
    prefix: String,
    window: isize,
    ttl_ms: i64,
}

struct Keys {
    turns: String,
    summary: String,
    facts: String,
}

impl RedisMemory {
    pub fn new(conn: ConnectionManager, key_prefix: &str, settings: MemorySettings) -> Self {
        Self {
            conn,
            prefix: format!("{key_prefix}:mem:"),
            window: isize::try_from(settings.window).unwrap_or(isize::MAX),
            ttl_ms: i64::try_from(settings.ttl.as_millis())
                .unwrap_or(i64::MAX)
                .max(1),
        }
    }

    fn keys(&self, conversation: ConversationId) -> Keys {
        let base = format!("{}{conversation}", self.prefix);
        Keys {
            turns: format!("{base}:turns"),
            summary: format!("{base}:summary"),
            facts: format!("{base}:facts"),
        }
    }

    /// Adds the TTL refresh of every key of the conversation to a write pipeline.
    fn refresh(&self, pipe: &mut Pipeline, keys: &Keys) {
        for key in [&keys.turns, &keys.summary, &keys.facts] {
            pipe.pexpire(key, self.ttl_ms).ignore();
        }
    }

    async fn write(&self, keys: &Keys, pipe: &mut Pipeline) -> Result<(), MemoryError> {
        self.refresh(pipe, keys);
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %conversation))]
    pub(super) async fn append_all(
        &self,
        conversation: ConversationId,
        turns: &[Turn],
    ) -> Result<Vec<Turn>, MemoryError> {
        let keys = self.keys(conversation);
        let json = turns
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.rpush(&keys.turns, json).ignore();
        // The turns beyond the window, read in the same transaction that drops them.
        pipe.lrange(&keys.turns, 0, -(self.window + 1));
        if self.window == 0 {
            // `LTRIM key -0 -1` would keep everything.
            pipe.del(&keys.turns).ignore();
        } else {
            pipe.ltrim(&keys.turns, -self.window, -1).ignore();
        }
        self.refresh(&mut pipe, &keys);
        let (dropped,): (Vec<String>,) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(dropped
            .iter()
            .map(|json| serde_json::from_str(json))
            .collect::<Result<_, _>>()?)
    }

    pub(super) async fn recent(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<Turn>, MemoryError> {
        let keys = self.keys(conversation);
        let raw: Vec<String> = self.conn.clone().lrange(&keys.turns, 0, -1).await?;
        Ok(raw
            .iter()
            .map(|json| serde_json::from_str(json))
            .collect::<Result<_, _>>()?)
    }

    pub(super) async fn summary(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<String>, MemoryError> {
        let keys = self.keys(conversation);
        Ok(self.conn.clone().get(&keys.summary).await?)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %conversation))]
    pub(super) async fn set_summary(
        &self,
        conversation: ConversationId,
        summary: &str,
    ) -> Result<(), MemoryError> {
        let keys = self.keys(conversation);
        let mut pipe = redis::pipe();
        pipe.atomic().set(&keys.summary, summary).ignore();
        self.write(&keys, &mut pipe).await
    }

    pub(super) async fn facts(
        &self,
        conversation: ConversationId,
    ) -> Result<BTreeMap<String, String>, MemoryError> {
        let keys = self.keys(conversation);
        Ok(self.conn.clone().hgetall(&keys.facts).await?)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %conversation))]
    pub(super) async fn set_fact(
        &self,
        conversation: ConversationId,
        key: &str,
        value: &str,
    ) -> Result<(), MemoryError> {
        let keys = self.keys(conversation);
        let mut pipe = redis::pipe();
        pipe.atomic().hset(&keys.facts, key, value).ignore();
        self.write(&keys, &mut pipe).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %conversation))]
    pub(super) async fn forget(&self, conversation: ConversationId) -> Result<(), MemoryError> {
        let keys = self.keys(conversation);
        let () = self
            .conn
            .clone()
            .del(&[&keys.turns, &keys.summary, &keys.facts])
            .await?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), MemoryError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

impl fmt::Debug for RedisMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisMemory")
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}
