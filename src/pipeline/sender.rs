//! The sender: delivers the outbound outbox. It keeps up to `PARLEY_SENDERS` sends in flight,
//! claiming due messages with a lease (at most one per conversation, so replies leave in order)
//! whenever a slot frees. Each is handed to its channel and its outcome recorded: sent with the
//! provider's id (every send that finished meanwhile in one commit), retried later with backoff
//! (honouring `Retry-After`), or failed with the provider's error code. Woken by workers when
//! they queue a reply, and polling as a fallback so several replicas share one outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::consent::{GateDecision, GateRequest};
use crate::domain::MessageId;
use crate::retry::RetryPolicy;
use crate::store::{Accepted, OutboundJob, SendFailure};

/// How long a message waits when the consent gate could not check it.
const GATE_RETRY_MS: i64 = 1_000;

/// How often the sender looks for due messages when nobody woke it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the sender until `shutdown`, then delivers what is already due (bounded by `drain_for`).
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken, drain_for: Duration) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = state.outbox_wakeup.notified() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        deliver_due(&state).await;
    }
    // Flush: replies committed before the stop go out now rather than after a restart. No new
    // round starts after `drain_for`, but a round is never cut off: its sends are recorded only
    // when it ends, and a send left unrecorded would go out again after the restart.
    deliver_due_until(&state, Some(Instant::now() + drain_for)).await;
}

/// Delivers due messages until none is left.
pub async fn deliver_due(state: &Arc<AppState>) {
    deliver_due_until(state, None).await;
}

/// Delivers due messages until none is left, claiming nothing after `deadline` (what was
/// claimed is still delivered and recorded).
async fn deliver_due_until(state: &Arc<AppState>, deadline: Option<Instant>) {
    let settings = &state.config.pipeline;
    // One task per message being delivered. Tasks, not futures polled by this loop: they
    // must go on while it waits for the store (a delivery holding a pooled connection that
    // nobody polls would starve the claim waiting for one).
    let mut sending: JoinSet<Delivery> = JoinSet::new();
    // Whether the last claim found fewer messages than it had room for: nothing more is due
    // until a send finishes (which may make its conversation's next reply claimable).
    let mut exhausted = false;
    loop {
        let claiming = !exhausted && deadline.is_none_or(|d| Instant::now() < d);
        let room = settings.senders.saturating_sub(sending.len());
        if claiming && room > 0 {
            let now = state.clock.now_ms();
            match state
                .store
                .claim_outbound(now, settings.send_lease.as_millis() as i64, room as i64)
                .await
            {
                Ok(jobs) => {
                    exhausted = jobs.len() < room;
                    let decisions = gate_all(state, &jobs).await;
                    for (job, decision) in jobs.into_iter().zip(decisions) {
                        let state = state.clone();
                        sending.spawn(async move { deliver(&state, job, decision).await });
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not claim outbound messages");
                    exhausted = true;
                }
            }
        }
        if sending.is_empty() {
            return;
        }
        // Wait for one send, take every other one that finished meanwhile, and record them
        // together: one commit however many finished.
        let mut finished = Vec::new();
        finished.extend(sending.join_next().await);
        while let Some(delivery) = sending.try_join_next() {
            finished.push(delivery);
        }
        let mut accepted = Vec::with_capacity(finished.len());
        for delivery in finished {
            match delivery {
                // A recorded send makes its conversation's next message claimable.
                Ok(Delivery::Sent(sent)) => {
                    exhausted = false;
                    accepted.push(sent);
                }
                // Settled or waiting: what stood behind it may be claimable now.
                Ok(Delivery::NotSent) => exhausted = false,
                // Its claim's lease expires and the message is claimed again.
                Err(err) => tracing::error!(error = %err, "a delivery task failed"),
            }
        }
        record_accepted(state, accepted).await;
    }
}

/// What became of one claimed message.
enum Delivery {
    /// The provider accepted it; it is recorded with the next commit.
    Sent(Accepted),
    /// Not sent: refused, failed, deferred, or waiting for a retry (its outcome recorded, or its
    /// lease left to expire when the store could not record it).
    NotSent,
}

/// Records sends the providers accepted (one commit) and tells live viewers.
async fn record_accepted(state: &AppState, sent: Vec<Accepted>) {
    if sent.is_empty() {
        return;
    }
    let now = state.clock.now_ms();
    if let Err(err) = state.store.mark_sent_many(&sent, now).await {
        // The leases expire and the messages are claimed again.
        tracing::error!(messages = sent.len(), error = %err, "could not record sent messages");
        return;
    }
    let ids: Vec<MessageId> = sent.iter().map(|s| s.id).collect();
    let records = match state.store.messages(&ids).await {
        Ok(records) => records,
        Err(err) => {
            tracing::debug!(error = %err, "sent messages not re-read for live updates");
            return;
        }
    };
    futures::future::join_all(records.iter().map(|record| {
        super::worker::publish(state, record.conversation_id, std::slice::from_ref(record))
    }))
    .await;
}

/// The consent gate's decisions on claimed messages, asked in one read right before they are
/// handed to their providers; `None` for each when the gate could not decide.
async fn gate_all(state: &AppState, jobs: &[OutboundJob]) -> Vec<Option<GateDecision>> {
    let requests: Vec<GateRequest<'_>> = jobs
        .iter()
        .map(|job| GateRequest {
            tenant: &job.tenant,
            contact: job.contact_id,
            channel: job.channel,
            address: &job.address,
            purpose: job.purpose,
            template: job.template.is_some(),
        })
        .collect();
    match state
        .consent
        .gate_many(&requests, state.clock.now_ms())
        .await
    {
        Ok(decisions) => decisions.into_iter().map(Some).collect(),
        Err(err) => {
            tracing::warn!(messages = jobs.len(), error = %err, "consent gate unavailable; the messages wait");
            vec![None; jobs.len()]
        }
    }
}

async fn deliver(state: &AppState, job: OutboundJob, decision: Option<GateDecision>) -> Delivery {
    if job.previous_attempt_vanished {
        state.metrics.outbound_uncertain.inc();
        tracing::warn!(message.id = %job.id, attempts = job.attempts, "retrying a send whose earlier attempt vanished mid-call; the prospect may receive it twice");
    }
    let channel = job.channel;
    if let Some(stopped) = gate(state, &job, decision).await {
        return stopped;
    }
    let outcome = crate::channels::outbound::send(state, &job)
        .await
        .map(|accepted| (accepted.provider_id, accepted.status))
        .map_err(|refused| {
            let retry = refused.retryable.then_some(refused.retry_after);
            (refused.failure, retry)
        });
    let now = state.clock.now_ms();
    let recorded = match outcome {
        Ok((provider_id, status)) => {
            state.metrics.send(channel.as_str(), "sent");
            return Delivery::Sent(Accepted {
                id: job.id,
                provider_id,
                status,
            });
        }
        Err((failure, Some(retry_after))) => {
            let policy = RetryPolicy {
                max_attempts: state.config.pipeline.max_send_attempts,
                ..RetryPolicy::OUTBOUND
            };
            match policy.delay_after(job.attempts.max(1) as u32, retry_after) {
                Some(delay) => {
                    state.metrics.send(channel.as_str(), "retry");
                    tracing::info!(message.id = %job.id, attempts = job.attempts, code = failure.code, delay_ms = delay.as_millis() as u64, "send failed; will retry");
                    let recorded = state
                        .store
                        .schedule_retry(job.id, now + delay.as_millis() as i64, &failure, now)
                        .await;
                    (recorded, Delivery::NotSent)
                }
                None => {
                    state.metrics.send(channel.as_str(), "failed");
                    tracing::warn!(message.id = %job.id, attempts = job.attempts, code = failure.code, "send failed after the last attempt");
                    (
                        state.store.mark_failed(job.id, &failure, now).await,
                        Delivery::NotSent,
                    )
                }
            }
        }
        Err((failure, None)) => {
            state.metrics.send(channel.as_str(), "failed");
            tracing::warn!(message.id = %job.id, code = failure.code, "send failed permanently");
            (
                state.store.mark_failed(job.id, &failure, now).await,
                Delivery::NotSent,
            )
        }
    };
    match recorded {
        (Ok(()), delivery) => {
            if let Ok(Some(record)) = state.store.message(job.id).await {
                super::worker::publish(state, job.conversation_id, &[record]).await;
            }
            delivery
        }
        (Err(err), _) => {
            // The lease expires and the message is claimed again.
            tracing::error!(message.id = %job.id, error = %err, "could not record a send outcome");
            Delivery::NotSent
        }
    }
}

/// Acts on the consent gate's decision, taken right before the provider call: `None` to send. A
/// deferred message is released until its time, a refused one is recorded `blocked`, and when
/// the gate could not decide (the store is unreachable) nothing is sent: the message is retried
/// shortly.
async fn gate(
    state: &AppState,
    job: &OutboundJob,
    decision: Option<GateDecision>,
) -> Option<Delivery> {
    let now = state.clock.now_ms();
    let (recorded, delivery) = match decision {
        Some(GateDecision::Send) => return None,
        Some(GateDecision::Defer { until_ms, reason }) => {
            state.metrics.send(job.channel.as_str(), "deferred");
            tracing::info!(message.id = %job.id, reason = reason.as_str(), "send deferred by the consent gate");
            let recorded = state
                .store
                .defer_outbound(job.id, until_ms, reason.as_str(), now)
                .await;
            (recorded, Delivery::NotSent)
        }
        Some(GateDecision::Refuse(reason)) => {
            state.metrics.send(job.channel.as_str(), "blocked");
            tracing::info!(message.id = %job.id, reason = reason.as_str(), "send refused by the consent gate");
            let recorded = state
                .store
                .block_outbound(job.id, reason.as_str(), reason.explain(), now)
                .await;
            (recorded, Delivery::NotSent)
        }
        None => {
            let failure = SendFailure {
                code: None,
                detail: "the consent gate could not check this message".to_owned(),
            };
            let recorded = state
                .store
                .schedule_retry(job.id, now + GATE_RETRY_MS, &failure, now)
                .await;
            (recorded, Delivery::NotSent)
        }
    };
    match recorded {
        Ok(()) => Some(delivery),
        Err(err) => {
            tracing::error!(message.id = %job.id, error = %err, "could not record the consent gate's decision; the lease will expire");
            Some(Delivery::NotSent)
        }
    }
}
