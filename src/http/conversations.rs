//! Conversations: the list (staff), one conversation's messages (the admin token, sales staff of
//! its business, or the web visitor it belongs to), and its live events as server-sent events
//! (staff, or the web visitor the conversation belongs to).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{require_admin, require_conversation_access};
use super::{message_json, rfc3339};
use crate::app::AppState;
use crate::domain::{ConversationId, Direction, TenantId};
use crate::error::AppError;
use crate::pipeline::worker::conversation_topic;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/conversations", get(list))
        .route("/api/v1/conversations/{id}/messages", get(messages))
        .route("/api/v1/conversations/{id}/events", get(events))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    tenant: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let tenant = query
        .tenant
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(AppError::bad_request)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let conversations = state
        .store
        .list_conversations(tenant.as_ref(), limit)
        .await?;
    let items: Vec<Value> = conversations
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "tenant": c.tenant,
                "contact_id": c.contact_id,
                "contact_name": c.display_name,
                "channel": c.channel,
                "state": c.state,
                "created_at": rfc3339(c.created_at),
                "updated_at": rfc3339(c.updated_at),
            })
        })
        .collect();
    Ok(Json(json!({ "conversations": items })))
}

#[derive(Debug, Deserialize)]
struct VisitorQuery {
    visitor_id: Option<String>,
    limit: Option<i64>,
}

fn conversation_id(raw: &str) -> Result<ConversationId, AppError> {
    ConversationId::parse(raw)
        .map_err(|_| AppError::bad_request("the conversation id is not a UUID"))
}

async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<VisitorQuery>,
) -> Result<Json<Value>, AppError> {
    let id = conversation_id(&id)?;
    let is_staff = staff_reader(&state, &headers, id).await?;
    if !is_staff {
        require_conversation_access(&state, &headers, id, query.visitor_id.as_deref())?;
    }
    let limit = query.limit.unwrap_or(200).clamp(1, 1000);
    let records = state.store.list_messages(id, limit).await?;
    if records.is_empty() && state.store.conversation(id).await?.is_none() {
        // A visitor who has not written yet has an empty conversation, not a missing one.
        if query.visitor_id.is_none() {
            return Err(AppError::not_found("no such conversation"));
        }
    }
    let messages: Vec<Value> = records
        .iter()
        // A visitor sees what was delivered to them: not replies still waiting for the consent
        // gate, nor ones it refused.
        .filter(|m| {
            is_staff
                || m.direction == Direction::Inbound
                || !matches!(m.status.as_str(), "queued" | "blocked")
        })
        .map(message_json)
        .collect();
    Ok(Json(json!({ "messages": messages })))
}

/// Whether the caller is the admin token or a salesperson (or staff administrator) of the
/// conversation's business; `false` for anyone else, who may still be its web visitor.
async fn staff_reader(
    state: &AppState,
    headers: &HeaderMap,
    id: ConversationId,
) -> Result<bool, AppError> {
    if crate::http::auth::is_admin(state, headers) {
        return Ok(true);
    }
    if crate::http::auth::bearer(headers).is_none() {
        return Ok(false);
    }
    let principal =
        crate::http::auth::require_role(state, headers, &[crate::staff::Role::Sales]).await?;
    let owned = state
        .store
        .conversation(id)
        .await?
        .is_some_and(|c| principal.may_see_tenant(c.tenant.as_str()));
    if owned {
        Ok(true)
    } else {
        Err(AppError::not_found("no such conversation"))
    }
}

async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<VisitorQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let id = conversation_id(&id)?;
    require_conversation_access(&state, &headers, id, query.visitor_id.as_deref())?;
    let shutdown = state.shutdown.clone();
    let stream = state
        .live
        .subscribe(&conversation_topic(id))
        .map(|payload| {
            let event = Event::default().event("message");
            Ok(match event.json_data(&payload) {
                Ok(event) => event,
                Err(_) => Event::default().comment("unserialisable event skipped"),
            })
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
