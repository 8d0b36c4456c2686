//! Conversation memory: the recent turns (a bounded window), a rolling summary and the lead facts
//! extracted so far, per conversation, in-process or in Redis.
//!
//! Memory is a cache of what the agents need to keep context, not a record: the messages
//! themselves are in SQL. It expires after `ttl` without writes (every write refreshes the whole
//! conversation's memory), and the in-process variant also bounds its total size, evicting the
//! least recently used conversations first. Both variants pass one conformance suite
//! (`tests/it/backends_memory.rs`).

mod inprocess;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::ConversationId;

pub use inprocess::InProcessMemory;
pub use redis::RedisMemory;

/// Conversation memory: one variant per backend, chosen by configuration (`REDIS_URL`).
/// Cloning is cheap and shares the store.
#[derive(Clone, Debug)]
pub enum Memory {
    InProcess(InProcessMemory),
    Redis(RedisMemory),
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: TurnRole,
    pub text: String,
    /// When it was said, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Who said a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnRole {
    Prospect,
    Bot,
    Staff,
}

/// How much to remember, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySettings {
    /// Most recent turns kept per conversation; older ones are dropped.
    pub window: usize,
    /// A conversation's memory is forgotten this long after its last write.
    pub ttl: Duration,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            window: 20,
            ttl: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// What can go wrong reading or writing memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory backend error: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("stored memory is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl Memory {
    /// The embedded store: state lives in this process only, bounded in size.
    pub fn in_process(settings: MemorySettings) -> Self {
        Self::InProcess(InProcessMemory::new(settings))
    }

    /// The Redis store, shared by every replica using the same `key_prefix`.
    pub fn redis(
        conn: ::redis::aio::ConnectionManager,
        key_prefix: &str,
        settings: MemorySettings,
    ) -> Self {
        Self::Redis(RedisMemory::new(conn, key_prefix, settings))
    }

    /// Adds a turn at the end of the window, dropping the oldest beyond `window`; returns the
    /// turns dropped (oldest first), for the rolling summary to fold in.
    pub async fn append(
        &self,
        conversation: ConversationId,
        turn: Turn,
    ) -> Result<Vec<Turn>, MemoryError> {
        match self {
            Self::InProcess(m) => Ok(m.append_all(conversation, vec![turn])),
            Self::Redis(m) => {
                m.append_all(conversation, std::slice::from_ref(&turn))
                    .await
            }
        }
    }

    /// Adds several turns at once (one round trip), in order; returns the turns dropped.
    pub async fn append_all(
        &self,
        conversation: ConversationId,
        turns: Vec<Turn>,
    ) -> Result<Vec<Turn>, MemoryError> {
        if turns.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::InProcess(m) => Ok(m.append_all(conversation, turns)),
            Self::Redis(m) => m.append_all(conversation, &turns).await,
        }
    }

    /// The remembered turns, oldest first.
    pub async fn recent(&self, conversation: ConversationId) -> Result<Vec<Turn>, MemoryError> {
        match self {
            Self::InProcess(m) => Ok(m.recent(conversation)),
            Self::Redis(m) => m.recent(conversation).await,
        }
    }

    /// The rolling summary, if one was written.
    pub async fn summary(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<String>, MemoryError> {
        match self {
            Self::InProcess(m) => Ok(m.summary(conversation)),
            Self::Redis(m) => m.summary(conversation).await,
        }
    }

    /// Replaces the rolling summary.
    pub async fn set_summary(
        &self,
        conversation: ConversationId,
        summary: &str,
    ) -> Result<(), MemoryError> {
        match self {
            Self::InProcess(m) => {
                m.set_summary(conversation, summary);
                Ok(())
            }
            Self::Redis(m) => m.set_summary(conversation, summary).await,
        }
    }

    /// The extracted lead facts (name, email, budget, ...), by name.
    pub async fn facts(
        &self,
        conversation: ConversationId,
    ) -> Result<BTreeMap<String, String>, MemoryError> {
        match self {
            Self::InProcess(m) => Ok(m.facts(conversation)),
            Self::Redis(m) => m.facts(conversation).await,
        }
    }

    /// Sets one fact, replacing an earlier value under the same key.
    pub async fn set_fact(
        &self,
        conversation: ConversationId,
        key: &str,
        value: &str,
    ) -> Result<(), MemoryError> {
        match self {
            Self::InProcess(m) => {
                m.set_fact(conversation, key, value);
                Ok(())
            }
            Self::Redis(m) => m.set_fact(conversation, key, value).await,
        }
    }

    /// Forgets everything about the conversation.
    pub async fn forget(&self, conversation: ConversationId) -> Result<(), MemoryError> {
        match self {
            Self::InProcess(m) => {
                m.forget(conversation);
                Ok(())
            }
            Self::Redis(m) => m.forget(conversation).await,
        }
    }

    /// Checks that the backend answers (readiness).
    pub async fn ping(&self) -> Result<(), MemoryError> {
        match self {
            Self::InProcess(_) => Ok(()),
            Self::Redis(m) => m.ping().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_serialize_with_snake_case_roles() {
        let turn = Turn {
            role: TurnRole::Prospect,
            text: "hi".to_owned(),
            at_ms: 5,
        };
        assert_eq!(
            serde_json::to_value(&turn).unwrap(),
            serde_json::json!({"role": "prospect", "text": "hi", "at_ms": 5})
        );
        let staff: TurnRole = serde_json::from_str("\"staff\"").unwrap();
        assert_eq!(staff, TurnRole::Staff);
    }
}
