//! Recovery: messages recorded but never handled (the process died between the commit and the
//! worker, or the queue announcement was lost) are announced again, at start-up and then on a
//! timer. A second loop keeps PostgreSQL's planner statistics current
//! ([`Store::refresh_planner_statistics`](crate::store::Store::refresh_planner_statistics)).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::AppState;

/// Conversations announced per sweep at most.
const SWEEP_LIMIT: i64 = 10_000;

/// Sweeps until `shutdown`. The first sweep runs at once and takes everything pending.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let interval = state.config.pipeline.recovery_interval;
    let mut first = true;
    loop {
        // After the first sweep, only messages older than one interval: younger ones are
        // probably being handled right now.
        let cutoff = if first {
            i64::MAX
        } else {
            state.clock.now_ms() - interval.as_millis() as i64
        };
        sweep(&state, cutoff).await;
        first = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// How often the hot tables' planner statistics are checked (PostgreSQL only).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps PostgreSQL's planner statistics current until `shutdown`: at start-up, then every
/// [`STATISTICS_INTERVAL`]. A burst of new rows otherwise leaves the planner believing the
/// outbox is empty, and claims slow down by four orders of magnitude.
pub async fn maintain_statistics(state: Arc<AppState>, shutdown: CancellationToken) {
    if matches!(state.store, crate::store::Store::Sqlite(_)) {
        // SQLite's planner needs no maintenance: nothing to schedule.
        return;
    }
    loop {
        match state.store.refresh_planner_statistics().await {
            Ok(report) if !report.analysed.is_empty() => {
                tracing::info!(analysed = ?report.analysed, vacuumed = ?report.vacuumed, "planner statistics refreshed");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "could not refresh planner statistics"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(STATISTICS_INTERVAL) => {}
        }
    }
}

/// Announces every conversation with messages recorded before `recorded_before` still pending.
pub async fn sweep(state: &AppState, recorded_before: i64) {
    match state
        .store
        .conversations_with_pending(recorded_before, SWEEP_LIMIT)
        .await
    {
        Ok(conversations) if !conversations.is_empty() => {
            tracing::info!(
                conversations = conversations.len(),
                "announcing recorded messages that were not handled"
            );
            if let Err(err) = state.queue.push(&conversations).await {
                tracing::warn!(error = %err, "recovery could not announce work");
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "recovery sweep failed"),
    }
}
