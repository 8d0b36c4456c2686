//! The embedded work queue: a state per conversation (absent = idle, queued, running, running
//! and announced again) and a FIFO of queued conversations, under one mutex.
//!
//! A conversation is in the FIFO at most once and never runs twice at once: a push while it runs
//! only marks it dirty, and finishing a dirty conversation queues it again. Nothing here
//! survives the process; that is fine because the pending messages are in the database and
//! start-up announces them again.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::{Held as LeaseHeld, Lease};
use crate::domain::ConversationId;

/// The in-process queue. Clones share it.
#[derive(Clone, Default)]
pub struct InProcessQueue {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// One permit per queued conversation; waiters that are dropped pass theirs on.
    ready: Notify,
}

#[derive(Default)]
struct State {
    slots: HashMap<ConversationId, Slot>,
    fifo: VecDeque<ConversationId>,
}

enum Slot {
    Queued,
    Running { dirty: bool },
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, and the state stays consistent even if one
        // did: every update is a single match arm.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, conversation: ConversationId, requeue: bool) {
        let mut state = self.state();
        let State { slots, fifo } = &mut *state;
        let again = match slots.get(&conversation) {
            Some(Slot::Running { dirty }) => *dirty || requeue,
            // Unreachable while the lease exists; leave other states alone.
            _ => return,
        };
        if again {
            slots.insert(conversation, Slot::Queued);
            fifo.push_back(conversation);
            drop(state);
            self.ready.notify_one();
        } else {
            slots.remove(&conversation);
        }
    }
}

impl InProcessQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn push(&self, conversations: &[ConversationId]) {
        let mut queued = 0;
        {
            let mut state = self.shared.state();
            let State { slots, fifo } = &mut *state;
            for &conversation in conversations {
                match slots.entry(conversation) {
                    Entry::Vacant(slot) => {
                        slot.insert(Slot::Queued);
                        fifo.push_back(conversation);
                        queued += 1;
                    }
                    Entry::Occupied(mut slot) => {
                        if let Slot::Running { dirty } = slot.get_mut() {
                            *dirty = true;
                        }
                    }
                }
            }
        }
        for _ in 0..queued {
            self.shared.ready.notify_one();
        }
    }

    pub(super) async fn next(&self) -> Lease {
        loop {
            let notified = self.shared.ready.notified();
            tokio::pin!(notified);
            // Register before looking, so a push between the look and the wait is not missed.
            notified.as_mut().enable();
            if let Some(lease) = self.try_take() {
                return lease;
            }
            notified.await;
        }
    }

    fn try_take(&self) -> Option<Lease> {
        let mut state = self.shared.state();
        let conversation = state.fifo.pop_front()?;
        state
            .slots
            .insert(conversation, Slot::Running { dirty: false });
        Some(Lease {
            conversation,
            held: LeaseHeld::InProcess(Held {
                shared: Arc::clone(&self.shared),
                conversation,
                finished: false,
            }),
        })
    }

    pub(super) fn depth(&self) -> u64 {
        self.shared.state().fifo.len() as u64
    }
}

impl fmt::Debug for InProcessQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessQueue")
            .field("depth", &self.depth())
            .finish()
    }
}

/// The in-process half of a [`Lease`]: releases on finish, and on drop queues again.
pub(super) struct Held {
    shared: Arc<Shared>,
    conversation: ConversationId,
    finished: bool,
}

impl Held {
    pub(super) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.finished {
            tracing::warn!(
                conversation.id = %self.conversation,
                "work queue: lease dropped without finish; announcing the conversation again"
            );
        }
        self.shared.release(self.conversation, !self.finished);
    }
}
