//! HTTP: one router per feature, merged here, with the layers every request passes: a request
//! id, a tracing span naming the matched route (never the raw path with its ids or the body),
//! panic safety and the JSON error shape.

mod auth;
mod consent;
mod conversations;
mod crm;
mod email;
pub(crate) mod handoffs;
mod health;
mod json;
mod knowledge;
pub(crate) mod leads;
mod staff;
mod twilio;
mod waha;
mod web;
mod webhook;
mod whatsapp;
mod widget;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, header};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::store::MessageRecord;

pub use json::ApiJson;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        let request_id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", method = %request.method(), http.route = %route, request_id = %request_id)
    });
    Router::new()
        .merge(whatsapp::routes(&state))
        .merge(twilio::routes(&state))
        .merge(waha::routes(&state))
        .merge(email::routes(&state))
        .merge(web::routes())
        .merge(widget::routes())
        .merge(conversations::routes())
        .merge(consent::routes())
        .merge(handoffs::routes())
        .merge(staff::routes())
        .merge(leads::routes())
        .merge(crm::routes())
        .merge(health::routes())
        .merge(knowledge::routes(&state))
        .merge(crate::webapp::routes())
        .layer(axum::middleware::from_fn(crate::webapp::api_cookie_auth))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    HeaderName::from_static("x-hub-signature-256"),
                    HeaderName::from_static("x-twilio-signature"),
                    HeaderName::from_static("x-webhook-hmac"),
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(crate::error::json_errors))
                .layer(CatchPanicLayer::new()),
        )
}

/// A message as the API and live events show it.
pub fn message_json(record: &MessageRecord) -> Value {
    json!({
        "id": record.id,
        "conversation_id": record.conversation_id,
        "direction": record.direction,
        "author": record.author,
        "kind": record.kind,
        "text": record.text,
        "status": record.status,
        "intent": record.intent,
        "confidence": record.confidence,
        "error_code": record.error_code,
        "purpose": record.purpose,
        "gate_reason": record.gate_reason,
        "agent": record.agent,
        "confidence_factors": record.confidence_factors.as_deref().and_then(|f| serde_json::from_str::<Value>(f).ok()),
        "sources": record.sources.as_deref().and_then(|f| serde_json::from_str::<Value>(f).ok()),
        "created_at": rfc3339(record.created_at),
        "updated_at": rfc3339(record.updated_at),
    })
}

/// Unix milliseconds as an RFC 3339 timestamp in UTC.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
