//! The sender: delivers the outbound outbox. It claims due messages with a lease (at most one per
//! conversation, so replies leave in order), hands each to its channel, and records the outcome:
//! sent with the provider's id, retried later with backoff (honouring `Retry-After`), or failed
//! with the provider's error code. Woken by workers when they queue a reply, and polling as a
//! fallback so several replicas share one outbox.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::retry::RetryPolicy;
use crate::store::{OutboundJob, SendFailure};

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
    // Flush: replies committed before the stop go out now rather than after a restart.
    let _ = tokio::time::timeout(drain_for, deliver_due(&state)).await;
}

/// Delivers due messages until none is left.
pub async fn deliver_due(state: &AppState) {
    let settings = &state.config.pipeline;
    loop {
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
        futures::stream::iter(jobs)
            .for_each_concurrent(settings.senders, |job| deliver(state, job))
            .await;
    }
}

/// One delivery attempt and its recorded outcome.
async fn deliver(state: &AppState, job: OutboundJob) {
    if job.previous_attempt_vanished {
        state.metrics.outbound_uncertain.inc();
        tracing::warn!(message.id = %job.id, attempts = job.attempts, "retrying a send whose earlier attempt vanished mid-call; the prospect may receive it twice");
    }
    let channel = job.channel;
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
            state
                .store
                .mark_sent(job.id, provider_id.as_ref(), status, now)
                .await
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
            // The lease expires and the message is claimed again: a possible duplicate, counted then.
            tracing::error!(message.id = %job.id, error = %err, "could not record a send outcome");
        }
    }
}
