//! The recorder: the webhook's one durable step. Requests hand their parsed messages to a single
//! task that commits whatever has accumulated in one transaction (group commit), answers each
//! request once its batch is durable, and then announces the conversations with new work to the
//! queue. Under load this turns thousands of webhooks per second into a few hundred commits;
//! when idle, a lone webhook is committed at once (nothing waits for a batch to fill).
//!
//! On PostgreSQL several batches commit at once (each on its own connection, so one batch's
//! round trips and WAL flush overlap the next one's); SQLite has one writer, so it takes one batch
//! at a time. Concurrent batches insert contacts and conversations in id order, so they never
//! wait on each other in a cycle; a batch that still loses a deadlock is retried once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{Clock, InboundMessage, StatusUpdate};
use crate::metrics::Metrics;
use crate::queue::WorkQueue;
use crate::store::{Store, StoreError};

/// Requests taken into one transaction at most.
const MAX_BATCH_REQUESTS: usize = 512;
/// Batches committing at once on PostgreSQL.
const POSTGRES_BATCHES_IN_FLIGHT: usize = 4;

/// Recording failed: the caller answers 503 and the provider redelivers later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    #[error("the store could not record the batch: {0}")]
    Store(Arc<StoreError>),
    #[error("Parley is shutting down")]
    ShuttingDown,
}

struct RecordRequest {
    messages: Vec<InboundMessage>,
    statuses: Vec<StatusUpdate>,
    done: oneshot::Sender<Result<RecordSummary, RecordError>>,
}

/// What happened to one request's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Messages recorded for the first time.
    pub recorded: usize,
    /// Redeliveries, acknowledged and ignored.
    pub duplicates: usize,
}

/// A handle for recording webhook contents. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Recorder {
    requests: mpsc::Sender<RecordRequest>,
}

impl Recorder {
    /// A handle and the recording task for the caller to spawn. The task ends when every
    /// `Recorder` clone is dropped, after committing what it already took.
    pub fn new(
        store: Store,
        queue: WorkQueue,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(8192);
        (Self { requests: tx }, run(rx, store, queue, metrics, clock))
    }

    /// Durably records messages and statuses; returns once committed.
    pub async fn record(
        &self,
        messages: Vec<InboundMessage>,
        statuses: Vec<StatusUpdate>,
    ) -> Result<RecordSummary, RecordError> {
        let (done, wait) = oneshot::channel();
        self.requests
            .send(RecordRequest {
                messages,
                statuses,
                done,
            })
            .await
            .map_err(|_| RecordError::ShuttingDown)?;
        wait.await.map_err(|_| RecordError::ShuttingDown)?
    }
}

async fn run(
    requests: mpsc::Receiver<RecordRequest>,
    store: Store,
    queue: WorkQueue,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) {
    let in_flight = match store {
        Store::Postgres(_) => POSTGRES_BATCHES_IN_FLIGHT,
        Store::Sqlite(_) => 1,
    };
    super::group_commit::run(requests, in_flight, MAX_BATCH_REQUESTS, move |batch| {
        let (store, queue, metrics, clock) =
            (store.clone(), queue.clone(), metrics.clone(), clock.clone());
        async move { commit_batch(batch, &store, &queue, &metrics, clock.as_ref()).await }
    })
    .await;
}

/// Commits one batch, answers its requests, and announces the new work.
async fn commit_batch(
    batch: Vec<RecordRequest>,
    store: &Store,
    queue: &WorkQueue,
    metrics: &Metrics,
    clock: &dyn Clock,
) {
    let mut messages = Vec::new();
    let mut statuses = Vec::new();
    // Each request's messages occupy a range of the batch.
    let mut waiting = Vec::with_capacity(batch.len());
    for request in batch {
        let start = messages.len();
        messages.extend(request.messages);
        statuses.extend(request.statuses);
        waiting.push((start..messages.len(), request.done));
    }
    let mut result = store
        .record_inbound(&messages, &statuses, clock.now_ms())
        .await;
    if result.as_ref().is_err_and(StoreError::is_deadlock) {
        tracing::info!(
            messages = messages.len(),
            "a webhook batch lost a deadlock; retrying it"
        );
        result = store
            .record_inbound(&messages, &statuses, clock.now_ms())
            .await;
    }
    match result {
        Ok(outcome) => {
            let mut is_new = vec![false; messages.len()];
            for inserted in &outcome.inserted {
                is_new[inserted.index] = true;
            }
            for (message, new) in messages.iter().zip(&is_new) {
                let result = if *new { "recorded" } else { "duplicate" };
                metrics.inbound(message.channel.as_str(), result, 1);
            }
            for (range, done) in waiting {
                let recorded = is_new[range.clone()].iter().filter(|n| **n).count();
                let _ = done.send(Ok(RecordSummary {
                    recorded,
                    duplicates: range.len() - recorded,
                }));
            }
            // After the acknowledgement: a failed announcement loses nothing, the recovery
            // sweep finds recorded messages that no worker took.
            let conversations = outcome.conversations();
            if !conversations.is_empty()
                && let Err(err) = queue.push(&conversations).await
            {
                tracing::warn!(error = %err, conversations = conversations.len(), "could not announce new work; the recovery sweep will");
            }
        }
        Err(err) => {
            tracing::error!(error = %err, messages = messages.len(), "recording a webhook batch failed");
            let err = RecordError::Store(Arc::new(err));
            for (_, done) in waiting {
                let _ = done.send(Err(err.clone()));
            }
        }
    }
}
