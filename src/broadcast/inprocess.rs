//! The embedded fan-out: publishing hands the event straight to this process's subscribers.

use std::fmt;
use std::sync::Arc;

use super::hub::Hub;

/// The in-process fan-out. Clones share it.
#[derive(Clone, Default)]
pub struct InProcessLive {
    hub: Arc<Hub>,
}

impl InProcessLive {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub(super) fn publish(&self, topic: &str, event: &serde_json::Value) {
        self.hub.deliver(topic, event.clone());
    }
}

impl fmt::Debug for InProcessLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessLive").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_dropped_with_its_last_subscriber() {
        let live = InProcessLive::new();
        let first = live.hub().subscribe("conversation:a");
        let second = live.hub().subscribe("conversation:a");
        assert_eq!(live.hub().topic_count(), 1);
        drop(first);
        assert_eq!(live.hub().topic_count(), 1);
        drop(second);
        assert_eq!(live.hub().topic_count(), 0);
    }
}
