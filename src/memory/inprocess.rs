//! The embedded memory store: one `moka` cache entry per conversation, replaced whole on every
//! write (so each write restarts its time to live, like `EXPIRE` in Redis), weighed by its
//! approximate size in bytes so the whole store stays under a fixed budget.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use moka::sync::Cache;

use super::{MemorySettings, Turn};
use crate::domain::ConversationId;

/// The most memory, in approximate bytes, the embedded store keeps before evicting the least
/// recently used conversations.
pub const IN_PROCESS_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The in-process store. Clones share it.
#[derive(Clone)]
pub struct InProcessMemory {
    cache: Cache<ConversationId, Arc<Remembered>>,
    window: usize,
}

#[derive(Clone, Default)]
struct Remembered {
    turns: VecDeque<Turn>,
    summary: Option<String>,
    facts: BTreeMap<String, String>,
}

impl Remembered {
    fn weight(&self) -> u32 {
        const OVERHEAD: usize = 64;
        let turns: usize = self.turns.iter().map(|t| t.text.len() + OVERHEAD).sum();
        let facts: usize = self
            .facts
            .iter()
            .map(|(k, v)| k.len() + v.len() + OVERHEAD)
            .sum();
        let summary = self.summary.as_ref().map_or(0, String::len);
        u32::try_from(OVERHEAD * 4 + turns + facts + summary).unwrap_or(u32::MAX)
    }
}

impl InProcessMemory {
    pub fn new(settings: MemorySettings) -> Self {
        let cache = Cache::builder()
            .max_capacity(IN_PROCESS_MAX_BYTES)
            .weigher(|_: &ConversationId, r: &Arc<Remembered>| r.weight())
            .time_to_live(settings.ttl)
            .build();
        Self {
            cache,
            window: settings.window,
        }
    }

    /// Replaces the conversation's memory with `change` applied to it, atomically per
    /// conversation.
    fn update(&self, conversation: ConversationId, change: impl FnOnce(&mut Remembered)) {
        self.cache.entry(conversation).and_upsert_with(|current| {
            let mut remembered = current
                .map(|e| Remembered::clone(&e.into_value()))
                .unwrap_or_default();
            change(&mut remembered);
            Arc::new(remembered)
        });
    }

    pub(super) fn append_all(&self, conversation: ConversationId, turns: Vec<Turn>) -> Vec<Turn> {
        let window = self.window;
        let mut dropped = Vec::new();
        self.update(conversation, |r| {
            r.turns.extend(turns);
            while r.turns.len() > window {
                dropped.extend(r.turns.pop_front());
            }
        });
        dropped
    }

    pub(super) fn recent(&self, conversation: ConversationId) -> Vec<Turn> {
        self.cache
            .get(&conversation)
            .map(|r| r.turns.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn summary(&self, conversation: ConversationId) -> Option<String> {
        self.cache.get(&conversation)?.summary.clone()
    }

    pub(super) fn set_summary(&self, conversation: ConversationId, summary: &str) {
        self.update(conversation, |r| r.summary = Some(summary.to_owned()));
    }

    pub(super) fn facts(&self, conversation: ConversationId) -> BTreeMap<String, String> {
        self.cache
            .get(&conversation)
            .map(|r| r.facts.clone())
            .unwrap_or_default()
    }

    pub(super) fn set_fact(&self, conversation: ConversationId, key: &str, value: &str) {
        self.update(conversation, |r| {
            r.facts.insert(key.to_owned(), value.to_owned());
        });
    }

    pub(super) fn forget(&self, conversation: ConversationId) {
        self.cache.invalidate(&conversation);
    }
}

impl fmt::Debug for InProcessMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessMemory")
            .field("conversations", &self.cache.entry_count())
            .field("window", &self.window)
            .finish()
    }
}
