//! The sender: delivers the outbound outbox. It claims due messages with a lease (at most one per
//! conversation, so replies leave in order), hands each to its channel, and records the outcome:
//! sent with the provider's id (a round's accepted sends in one commit), retried later with
//! backoff (honouring `Retry-After`), or failed with the provider's error code. Woken by workers
//! when they queue a reply, and polling as a fallback so several replicas share one outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::consent::{GateDecision, GateRequest};
use crate::domain::ConversationId;
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
pub async fn deliver_due(state: &AppState) {
    deliver_due_until(state, None).await;
}

/// Delivers due messages until none is left, starting no round after `deadline`.
async fn deliver_due_until(state: &AppState, deadline: Option<Instant>) {
    let settings = &state.config.pipeline;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let now = state.clock.now_ms();
        let jobs = match state
            .store
            .claim_outbound(
                now,
                settings.send_lease.as_millis() as i64,
                settings.senders as i64,
            )
            .await
        {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(error = %err, "could not claim outbound messages");
                return;
            }
        };
        if jobs.is_empty() {
            return;
        }
        let accepted: Vec<(ConversationId, Accepted)> = futures::stream::iter(jobs)
            .map(|job| deliver(state, job))
            .buffer_unordered(settings.senders)
            .filter_map(std::future::ready)
            .collect()
            .await;
        record_accepted(state, accepted).await;
    }
}

/// Records a round's accepted sends in one transaction (one commit for the round, not one per
/// message), then shows them to live listeners.
async fn record_accepted(state: &AppState, accepted: Vec<(ConversationId, Accepted)>) {
    if accepted.is_empty() {
        return;
    }
    let now = state.clock.now_ms();
    let (conversations, sent): (Vec<ConversationId>, Vec<Accepted>) = accepted.into_iter().unzip();
    if let Err(err) = state.store.mark_sent_many(&sent, now).await {
        // The leases expire and the messages are claimed again: possible duplicates, counted then.
        tracing::error!(messages = sent.len(), error = %err, "could not record sent messages");
        return;
    }
    for (conversation, sent) in conversations.into_iter().zip(&sent) {
        // Live listeners see it now; for the web channel this is the delivery itself.
        if let Ok(Some(record)) = state.store.message(sent.id).await {
            super::worker::publish(state, conversation, &[record]).await;
        }
    }
}

/// One delivery attempt. An accepted send is returned for the round to record together; every
/// other outcome (deferred, refused, retried, failed) is recorded here.
async fn deliver(state: &AppState, job: OutboundJob) -> Option<(ConversationId, Accepted)> {
    if job.previous_attempt_vanished {
        state.metrics.outbound_uncertain.inc();
        tracing::warn!(message.id = %job.id, attempts = job.attempts, "retrying a send whose earlier attempt vanished mid-call; the prospect may receive it twice");
    }
    let channel = job.channel;
    if !passes_gate(state, &job).await {
        return None;
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
            return Some((
                job.conversation_id,
                Accepted {
                    id: job.id,
                    provider_id,
                    status,
                },
            ));
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
                    state
                        .store
                        .schedule_retry(job.id, now + delay.as_millis() as i64, &failure, now)
                        .await
                }
                None => {
                    state.metrics.send(channel.as_str(), "failed");
                    tracing::warn!(message.id = %job.id, attempts = job.attempts, code = failure.code, "send failed after the last attempt");
                    state.store.mark_failed(job.id, &failure, now).await
                }
            }
        }
        Err((failure, None)) => {
            state.metrics.send(channel.as_str(), "failed");
            tracing::warn!(message.id = %job.id, code = failure.code, "send failed permanently");
            state.store.mark_failed(job.id, &failure, now).await
        }
    };
    match recorded {
        Ok(()) => {
            if let Ok(Some(record)) = state.store.message(job.id).await {
                super::worker::publish(state, job.conversation_id, &[record]).await;
            }
        }
        Err(err) => {
            // The lease expires and the message is claimed again.
            tracing::error!(message.id = %job.id, error = %err, "could not record a send outcome");
        }
    }
    None
}

/// The consent gate, right before the provider call. A deferred message is released until its
/// time, a refused one is recorded `blocked`, and when the gate cannot decide (the store is
/// unreachable) nothing is sent: the message is retried shortly.
async fn passes_gate(state: &AppState, job: &OutboundJob) -> bool {
    let now = state.clock.now_ms();
    let request = GateRequest {
        tenant: &job.tenant,
        contact: job.contact_id,
        channel: job.channel,
        address: &job.address,
        purpose: job.purpose,
        template: job.template.is_some(),
    };
    let recorded = match state.consent.gate(request, now).await {
        Ok(GateDecision::Send) => return true,
        Ok(GateDecision::Defer { until_ms, reason }) => {
            state.metrics.send(job.channel.as_str(), "deferred");
            tracing::info!(message.id = %job.id, reason = reason.as_str(), "send deferred by the consent gate");
            state
                .store
                .defer_outbound(job.id, until_ms, reason.as_str(), now)
                .await
        }
        Ok(GateDecision::Refuse(reason)) => {
            state.metrics.send(job.channel.as_str(), "blocked");
            tracing::info!(message.id = %job.id, reason = reason.as_str(), "send refused by the consent gate");
            state
                .store
                .block_outbound(job.id, reason.as_str(), reason.explain(), now)
                .await
        }
        Err(err) => {
            tracing::warn!(message.id = %job.id, error = %err, "consent gate unavailable; the message waits");
            let failure = SendFailure {
                code: None,
                detail: "the consent gate could not check this message".to_owned(),
            };
            state
                .store
                .schedule_retry(job.id, now + GATE_RETRY_MS, &failure, now)
                .await
        }
    };
    if let Err(err) = recorded {
        tracing::error!(message.id = %job.id, error = %err, "could not record the consent gate's decision; the lease will expire");
    }
    false
}
