//! `GET|POST /webhooks/whatsapp`: Meta's subscription handshake, and signed deliveries. A
//! delivery is verified over the raw bytes before anything is parsed, recorded durably, and only
//! then answered 200; a redelivery is answered 200 and ignored.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use secrecy::ExposeSecret;

use super::webhook;
use crate::app::AppState;
use crate::channels::whatsapp::{answer_subscription, parse_webhook, verify_signature};
use crate::error::AppError;

const CHANNEL: &str = "whatsapp";

pub fn routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/webhooks/whatsapp", get(verify).post(receive))
        .layer(DefaultBodyLimit::max(state.config.pipeline.max_body_bytes))
}

async fn verify(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<String, AppError> {
    let Some(expected) = &state.config.whatsapp.verify_token else {
        return Err(AppError::forbidden(
            "WhatsApp verification is not configured (WHATSAPP_VERIFY_TOKEN)",
        ));
    };
    answer_subscription(
        params.get("hub.mode").map(String::as_str),
        params.get("hub.verify_token").map(String::as_str),
        params.get("hub.challenge").map(String::as_str),
        expected.expose_secret(),
    )
    .map_err(|_| AppError::forbidden("the verify token or mode does not match"))
}

async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let metrics = &state.metrics;
    let body = body.map_err(|r| webhook::body_error(&state, CHANNEL, r))?;
    let Some(secret) = &state.config.whatsapp.app_secret else {
        // 503 rather than 4xx: Meta keeps redelivering, so nothing is lost while the operator
        // sets WHATSAPP_APP_SECRET.
        return Err(webhook::not_configured(&state, CHANNEL, "WhatsApp"));
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(err) = verify_signature(secret.expose_secret().as_bytes(), &body, signature) {
        metrics.webhook(CHANNEL, "bad_signature");
        tracing::warn!(reason = %err, "WhatsApp webhook refused: signature");
        return Err(AppError::unauthorized(
            "X-Hub-Signature-256 is missing or does not match the body",
        ));
    }
    let parsed = parse_webhook(&body, |phone_number_id| {
        state
            .config
            .tenant_for_whatsapp_number(phone_number_id)
            .map(|t| t.id.clone())
    })
    .map_err(|err| {
        metrics.webhook(CHANNEL, "malformed");
        AppError::bad_request(format!("the WhatsApp payload is malformed: {err}"))
    })?;
    if parsed.unroutable_changes > 0 {
        tracing::warn!(
            changes = parsed.unroutable_changes,
            "WhatsApp changes for a phone number id no tenant owns were ignored"
        );
    }
    webhook::record(&state, CHANNEL, parsed.messages, parsed.statuses).await?;
    Ok(StatusCode::OK)
}
