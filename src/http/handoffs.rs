//! The handoff queue for sales staff: list it with positions and waiting times, claim one (one
//! claim wins, a second is 409), reply through the prospect's channel and the consent gate, and
//! release the conversation back to the bot. `GET /api/v1/handoffs/events` streams queue changes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agents::handoff::{self, handoff_json, positions};
use crate::app::AppState;
use crate::domain::{ConversationId, TenantId};
use crate::error::AppError;
use crate::http::ApiJson;
use crate::http::auth::{Principal, require_role};
use crate::pipeline::compose::{self, Body, ComposeError, Sender};
use crate::staff::Role;
use crate::store::{ClaimOutcome, HandoffRecord};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/handoffs", get(list))
        .route("/api/v1/handoffs/events", get(events))
        .route("/api/v1/handoffs/{id}", get(one))
        .route("/api/v1/handoffs/{id}/claim", post(claim))
        .route("/api/v1/handoffs/{id}/reply", post(reply))
        .route("/api/v1/handoffs/{id}/release", post(release))
}

fn tenant_of(principal: &Principal) -> Option<TenantId> {
    match principal {
        Principal::AdminToken => None,
        Principal::Staff(staff, _) => TenantId::parse(&staff.tenant).ok(),
    }
}

async fn visible(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<HandoffRecord, AppError> {
    let handoff = state
        .store
        .handoff(id)
        .await?
        .filter(|h| principal.may_see_tenant(&h.tenant))
        .ok_or_else(|| AppError::not_found("no such handoff"))?;
    Ok(handoff)
}

/// `GET /api/v1/handoffs`: open handoffs, waiting ones first in queue order.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let principal = require_role(&state, &headers, &[Role::Sales]).await?;
    let handoffs = queue(&state, tenant_of(&principal).as_ref()).await?;
    Ok(Json(json!({ "handoffs": handoffs })))
}

/// The open handoffs as the API shows them (waiting ones first, in queue order, then claimed
/// ones), each with its contact's lead (`lead`: id, score, tier) and the claimer's name.
pub(crate) async fn queue(
    state: &AppState,
    tenant: Option<&TenantId>,
) -> Result<Vec<Value>, AppError> {
    let open = state.store.open_handoffs(tenant).await?;
    let now = state.clock.now_ms();
    let mut by_tenant: std::collections::BTreeMap<&str, Vec<HandoffRecord>> = Default::default();
    for h in &open {
        by_tenant
            .entry(h.tenant.as_str())
            .or_default()
            .push(h.clone());
    }
    let mut items = Vec::new();
    for handoffs in by_tenant.values() {
        for (h, position) in positions(handoffs) {
            items.push((h.clone(), handoff_json(h, Some(position), now)));
        }
    }
    items.extend(
        open.iter()
            .filter(|h| h.status == "claimed")
            .map(|h| (h.clone(), handoff_json(h, None, now))),
    );
    let mut names: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut out = Vec::with_capacity(items.len());
    for (h, mut body) in items {
        let lead = match crate::domain::ContactId::parse(&h.contact_id) {
            Ok(contact) => state.store.lead_by_contact(contact).await?,
            Err(_) => None,
        };
        body["lead"] = lead.map_or(
            Value::Null,
            |l| json!({"id": l.id.to_string(), "score": l.score, "tier": l.tier.as_str()}),
        );
        if let Some(staff_id) = &h.claimed_by {
            if !names.contains_key(staff_id) {
                let name = state.store.staff_by_id(staff_id).await?.map(|s| s.name);
                names.insert(staff_id.clone(), name);
            }
            body["claimed_by_name"] = json!(names[staff_id]);
        }
        out.push(body);
    }
    Ok(out)
}

/// `GET /api/v1/handoffs/{id}`.
async fn one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let principal = require_role(&state, &headers, &[Role::Sales]).await?;
    let handoff = visible(&state, &principal, &id).await?;
    Ok(Json(handoff_json(&handoff, None, state.clock.now_ms())))
}

/// `POST /api/v1/handoffs/{id}/claim`.
async fn claim(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let principal = require_role(&state, &headers, &[Role::Sales]).await?;
    let handoff = visible(&state, &principal, &id).await?;
    let Some(staff_id) = principal.staff_id() else {
        return Err(AppError::bad_request(
            "claiming needs a staff account: sign in with POST /api/v1/auth/login",
        ));
    };
    let now = state.clock.now_ms();
    match state.store.claim_handoff(&id, staff_id, now).await? {
        ClaimOutcome::Claimed => {}
        ClaimOutcome::AlreadyClaimed { .. } => {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "already_claimed",
                "someone else has claimed this conversation",
            ));
        }
        ClaimOutcome::NotOpen => {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "not_open",
                "this handoff is closed",
            ));
        }
    }
    tracing::info!(handoff.id = %id, staff.id = %staff_id, "handoff claimed");
    handoff::announce(&state, "claimed", &id).await;
    if let Ok(tenant) = TenantId::parse(&handoff.tenant) {
        handoff::tell_new_positions(&state, &tenant).await;
    }
    let handoff = visible(&state, &principal, &id).await?;
    Ok(Json(handoff_json(&handoff, None, now)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyRequest {
    text: Option<String>,
    template: Option<TemplateRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateRequest {
    name: String,
    #[serde(default)]
    params: Vec<String>,
}

/// `POST /api/v1/handoffs/{id}/reply`: the claimer (or an administrator) writes to the prospect.
async fn reply(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ReplyRequest>,
) -> Result<Response, AppError> {
    let principal = require_role(&state, &headers, &[Role::Sales]).await?;
    let handoff = visible(&state, &principal, &id).await?;
    let is_claimer =
        principal.staff_id().is_some() && handoff.claimed_by.as_deref() == principal.staff_id();
    if handoff.status != "claimed" || !(is_claimer || principal.role() == Role::Admin) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "not_claimed_by_you",
            "claim the conversation before replying",
        ));
    }
    let body = match (request.text, request.template) {
        (Some(text), None) => Body::Text(text),
        (None, Some(t)) => Body::Template {
            name: t.name,
            params: t.params,
        },
        _ => {
            return Err(AppError::bad_request(
                "send exactly one of `text` or `template`",
            ));
        }
    };
    let conversation = ConversationId::parse(&handoff.conversation_id)
        .map_err(|_| AppError::not_found("no such conversation"))?;
    let composed = compose::queue_message(&state, conversation, Sender::Staff, body, false)
        .await
        .map_err(|err| match err {
            ComposeError::NoConversation => AppError::not_found("no such conversation"),
            ComposeError::Store(e) => AppError::unavailable(&e),
            other => AppError::bad_request(other.to_string()),
        })?;
    Ok(super::consent::composed_response(&headers, &composed))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    note: Option<String>,
}

/// `POST /api/v1/handoffs/{id}/release`: back to the bot, with an optional note for the record.
async fn release(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AppError> {
    // The body is optional: none, or `{"note": "..."}`.
    let request: ReleaseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReleaseRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::bad_request(format!("the body is not a valid release: {e}")))?
    };
    let principal = require_role(&state, &headers, &[Role::Sales]).await?;
    let handoff = visible(&state, &principal, &id).await?;
    let is_claimer =
        principal.staff_id().is_some() && handoff.claimed_by.as_deref() == principal.staff_id();
    if handoff.status == "claimed" && !(is_claimer || principal.role() == Role::Admin) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "not_claimed_by_you",
            "only the person who claimed it (or an administrator) can release it",
        ));
    }
    let note = request
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.len() > 2000) {
        return Err(AppError::bad_request(
            "note must be at most 2000 characters",
        ));
    }
    let now = state.clock.now_ms();
    if !state
        .store
        .release_handoff(&id, note.as_deref(), now)
        .await?
    {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "not_open",
            "this handoff is closed",
        ));
    }
    tracing::info!(handoff.id = %id, "handoff released");
    handoff::announce(&state, "released", &id).await;
    if let Ok(tenant) = TenantId::parse(&handoff.tenant) {
        handoff::tell_new_positions(&state, &tenant).await;
    }
    let handoff = visible(&state, &principal, &id).await?;
    Ok(Json(handoff_json(&handoff, None, now)))
}

/// `GET /api/v1/handoffs/events`: queue changes as server-sent events (`event: handoff`).
async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let principal = require_role(&state, &headers, &[Role::Sales]).await?;
    let tenant = tenant_of(&principal).unwrap_or_else(TenantId::default_tenant);
    let stream = state.live.subscribe(&handoff::queue_topic(tenant.as_str()));
    let shutdown = state.shutdown.clone();
    let events = stream
        .take_until(async move { shutdown.cancelled().await })
        .map(|value| Ok(Event::default().event("handoff").data(value.to_string())));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
