//! `POST /webhooks/waha`: WAHA events. With `WAHA_HMAC_KEY` set, `X-Webhook-Hmac` must match the
//! raw body before anything is parsed. `message` events are recorded durably and then answered;
//! `session.status` changes are stored (so `/readyz` on every replica shows them) and logged.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use secrecy::ExposeSecret;

use super::webhook;
use crate::app::AppState;
use crate::channels::tenant_for_waha_session;
use crate::channels::waha::{WahaEvent, parse_event, session_is_down, verify};
use crate::domain::{Channel, TenantId};
use crate::error::AppError;
use crate::store::SessionState;

const CHANNEL: &str = "waha";

pub fn routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/webhooks/waha", post(receive))
        .layer(DefaultBodyLimit::max(state.config.pipeline.max_body_bytes))
}

async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let body = body.map_err(|r| webhook::body_error(&state, CHANNEL, r))?;
    if let Some(key) = &state.config.waha.hmac_key {
        let signature = headers.get("x-webhook-hmac").and_then(|v| v.to_str().ok());
        if let Err(err) = verify(key.expose_secret().as_bytes(), &body, signature) {
            state.metrics.webhook(CHANNEL, "bad_signature");
            tracing::warn!(reason = %err, "WAHA webhook refused: signature");
            return Err(AppError::unauthorized(
                "X-Webhook-Hmac is missing or does not match the body",
            ));
        }
    }
    let now = state.clock.now_ms();
    let event = parse_event(
        &body,
        |session| tenant_for_waha_session(&state.config, session),
        now,
    )
    .map_err(|err| {
        state.metrics.webhook(CHANNEL, "malformed");
        AppError::bad_request(format!("the WAHA event is malformed: {err}"))
    })?;
    match event {
        WahaEvent::Message(message) => {
            webhook::record(&state, CHANNEL, vec![*message], Vec::new()).await?;
        }
        WahaEvent::SessionStatus { session, status } => {
            let tenant = tenant_for_waha_session(&state.config, &session)
                .unwrap_or_else(TenantId::default_tenant);
            if session_is_down(&status) {
                tracing::warn!(tenant = %tenant, waha.session = %session, waha.status = %status, "WAHA session is down: WhatsApp messages cannot be sent or received");
            } else {
                tracing::info!(tenant = %tenant, waha.session = %session, waha.status = %status, "WAHA session status changed");
            }
            let record = SessionState {
                tenant,
                session,
                status,
                updated_at: now,
            };
            state
                .store
                .set_session_state(Channel::Waha, &record)
                .await?;
            state.metrics.webhook(CHANNEL, "session_status");
        }
        WahaEvent::Ignored { reason } => {
            tracing::debug!(reason, "WAHA event ignored");
            state.metrics.webhook(CHANNEL, "ignored");
        }
    }
    Ok(StatusCode::OK)
}

/// The WAHA check of `/readyz` when `WAHA_URL` is set: `unavailable` while any session's last
/// reported state is `FAILED` or `STOPPED`, with every session's state. WhatsApp through WAHA
/// being down does not make the replica unready (email, web chat and other channels still
/// work), so it does not change the overall status.
pub async fn readiness(state: &AppState) -> Option<serde_json::Value> {
    state.config.waha.url.as_ref()?;
    let check = match state.store.session_states(Channel::Waha).await {
        Ok(sessions) => {
            let down = sessions.iter().any(|s| session_is_down(&s.status));
            if down {
                tracing::warn!("readiness: a WAHA session is down");
            }
            serde_json::json!({
                "status": if down { "unavailable" } else { "ok" },
                "sessions": sessions.iter().map(|s| serde_json::json!({
                    "tenant": s.tenant,
                    "session": s.session,
                    "status": s.status,
                    "updated_at": super::rfc3339(s.updated_at),
                })).collect::<Vec<_>>(),
            })
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness: WAHA session states unavailable");
            serde_json::json!({ "status": "unknown" })
        }
    };
    Some(check)
}
