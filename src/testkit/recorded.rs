//! What the provider fakes share: a log of received requests that tests can wait on, and a queue
//! of scripted failures for the next requests.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// A scripted answer: HTTP status, body and an optional `Retry-After` in seconds.
#[derive(Debug, Clone)]
pub struct ScriptedFailure {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

#[derive(Debug)]
struct Inner<T> {
    items: Vec<T>,
    failures: VecDeque<ScriptedFailure>,
}

/// Received items of type `T`, in arrival order.
#[derive(Debug)]
pub struct Recorded<T> {
    inner: Mutex<Inner<T>>,
    arrived: Notify,
}

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: Vec::new(),
                failures: VecDeque::new(),
            }),
            arrived: Notify::new(),
        }
    }
}

impl<T: Clone> Recorded<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panicking test thread must not hide what was recorded from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `item` and wakes waiters.
    pub fn push(&self, item: T) {
        self.lock().items.push(item);
        self.arrived.notify_waiters();
    }

    /// The next scripted failure, if one is queued.
    pub fn next_failure(&self) -> Option<ScriptedFailure> {
        self.lock().failures.pop_front()
    }

    pub fn fail_next(&self, count: usize, failure: ScriptedFailure) {
        self.lock()
            .failures
            .extend(std::iter::repeat_n(failure, count));
    }

    pub fn all(&self) -> Vec<T> {
        self.lock().items.clone()
    }

    /// Waits until at least `n` items arrived; panics naming `what` after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration, what: &str) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let items = self.all();
            if items.len() >= n {
                return items;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{what}: waited {timeout:?} for {n}, got {}", items.len());
            }
        }
    }
}
