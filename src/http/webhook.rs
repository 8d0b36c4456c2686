//! What every provider webhook does alike: turning an unreadable or oversized body into the
//! documented error, and recording parsed messages and statuses through the one durable recorder
//! (answering only after the commit).

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use crate::app::AppState;
use crate::domain::{InboundMessage, StatusUpdate};
use crate::error::AppError;

/// The error for a body axum could not read: 413 past the limit, 400 otherwise.
pub fn body_error(state: &AppState, channel: &str, rejection: BytesRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        state.metrics.webhook(channel, "too_large");
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} bytes",
                state.config.pipeline.max_body_bytes
            ),
        )
    } else {
        state.metrics.webhook(channel, "unreadable");
        AppError::bad_request("the request body could not be read")
    }
}

/// 503 for a channel whose settings are missing: the provider keeps redelivering, so nothing is
/// lost while the operator configures it.
pub fn not_configured(state: &AppState, channel: &str, what: &str) -> AppError {
    state.metrics.webhook(channel, "not_configured");
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_configured",
        format!("{what} is not configured on this server"),
    )
}

/// Records durably and counts the outcome; `Ok` once committed.
pub async fn record(
    state: &AppState,
    channel: &str,
    messages: Vec<InboundMessage>,
    statuses: Vec<StatusUpdate>,
) -> Result<(), AppError> {
    if messages.is_empty() && statuses.is_empty() {
        state.metrics.webhook(channel, "empty");
        return Ok(());
    }
    match state.recorder.record(messages, statuses).await {
        Ok(summary) => {
            let result = if summary.recorded == 0 && summary.duplicates > 0 {
                "duplicate"
            } else {
                "accepted"
            };
            state.metrics.webhook(channel, result);
            Ok(())
        }
        Err(err) => {
            state.metrics.webhook(channel, "unavailable");
            Err(err.into())
        }
    }
}
