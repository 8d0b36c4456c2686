//! `POST /api/v1/web/messages`: the web channel (the widget and `parley chat`). Public, because a
//! website cannot hold a secret; the visitor id (random, kept by the visitor) names the thread.
//! Answers 202 with the conversation id once the message is recorded; replies arrive on the
//! conversation's messages and events routes.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::domain::{
    Channel, ConversationId, InboundMessage, MessageContent, ProviderMessageId, TenantId,
};
use crate::error::AppError;
use crate::http::ApiJson;

/// The longest message a visitor may send, in characters.
const MAX_TEXT_CHARS: usize = 4096;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/web/messages", post(receive))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebMessage {
    #[serde(default = "default_tenant")]
    tenant: String,
    visitor_id: String,
    text: String,
    /// Optional idempotency key: a retried POST with the same key is recorded once.
    client_message_id: Option<String>,
}

fn default_tenant() -> String {
    "default".to_owned()
}

async fn receive(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<WebMessage>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let tenant = TenantId::parse(&request.tenant).map_err(AppError::bad_request)?;
    if state.config.tenant(&tenant).is_none() {
        return Err(AppError::not_found(format!("no tenant `{tenant}`")));
    }
    let visitor = request.visitor_id.trim();
    let visitor_ok = (8..=128).contains(&visitor.len())
        && visitor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !visitor_ok {
        return Err(AppError::bad_request(
            "visitor_id must be 8 to 128 letters, digits, `-`, `_` or `.`",
        ));
    }
    let text = request.text.trim();
    if text.is_empty() {
        return Err(AppError::bad_request("text must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(AppError::bad_request(format!(
            "text must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    let provider_id = match &request.client_message_id {
        Some(id) => format!("web:{visitor}:{id}"),
        None => format!("web:{}", uuid::Uuid::now_v7()),
    };
    let provider_message_id =
        ProviderMessageId::parse(&provider_id).map_err(AppError::bad_request)?;
    let conversation = ConversationId::derive(&tenant, Channel::Web, visitor);
    let message = InboundMessage {
        tenant,
        channel: Channel::Web,
        provider_message_id,
        sender: visitor.to_owned(),
        thread: visitor.to_owned(),
        sender_name: None,
        sent_at_ms: state.clock.now_ms(),
        content: MessageContent::Text {
            body: text.to_owned(),
        },
        context: None,
        referral: None,
    };
    match state.recorder.record(vec![message], Vec::new()).await {
        Ok(summary) => {
            state.metrics.webhook(
                "web",
                if summary.recorded > 0 {
                    "accepted"
                } else {
                    "duplicate"
                },
            );
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "conversation_id": conversation })),
            ))
        }
        Err(err) => Err(err.into()),
    }
}
