//! The local fan-out both variants share: a bounded broadcast channel per topic that has
//! subscribers, removed when its last subscriber goes away, so memory follows the live
//! listeners rather than every topic ever used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::LiveSubscription;

/// Events buffered per topic for its slowest subscriber before that one starts missing some.
const PER_TOPIC_BUFFER: usize = 256;

#[derive(Default)]
pub(super) struct Hub {
    topics: Mutex<HashMap<String, broadcast::Sender<serde_json::Value>>>,
}

impl Hub {
    fn topics(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<serde_json::Value>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn subscribe(self: &Arc<Self>, topic: &str) -> LiveSubscription {
        let receiver = self
            .topics()
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(PER_TOPIC_BUFFER).0)
            .subscribe();
        LiveSubscription {
            events: BroadcastStream::new(receiver),
            hub: Arc::clone(self),
            topic: topic.to_owned(),
        }
    }

    /// Hands `event` to the topic's subscribers in this process. Never waits.
    pub(super) fn deliver(&self, topic: &str, event: serde_json::Value) {
        if let Some(sender) = self.topics().get(topic) {
            // An error only means every subscriber left since; the last one removes the topic.
            let _ = sender.send(event);
        }
    }

    /// Called by a subscription as it is dropped, before its receiver is.
    pub(super) fn unsubscribed(&self, topic: &str) {
        let mut topics = self.topics();
        if topics.get(topic).is_some_and(|s| s.receiver_count() <= 1) {
            topics.remove(topic);
        }
    }

    #[cfg(test)]
    pub(super) fn topic_count(&self) -> usize {
        self.topics().len()
    }
}
