//! The sales inbox: the live handoff queue (the page's script reads `/api/v1/handoffs` and its
//! event stream), a handoff's conversation with its context card and the claim, reply and release
//! controls, any conversation's history, and a conversation's live messages for the page.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};

use super::render::{error_page, forbidden, page};
use super::session::Session;
use super::views;
use crate::app::AppState;
use crate::domain::{ContactId, ConversationId};
use crate::error::AppError;
use crate::pipeline::worker::conversation_topic;
use crate::staff::Role;
use crate::store::{ConversationRecord, HandoffRecord};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/inbox", get(inbox))
        .route("/inbox/{id}", get(handoff_page))
        .route("/conversations/{id}", get(conversation_page))
        .route("/conversations/{id}/live", get(live))
}

fn not_found(session: &Session, what: &str) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Some(session),
        "Not found",
        &format!("There is no such {what}, or it belongs to another business."),
    )
}

async fn inbox(session: Session) -> Response {
    if !session.may(&[Role::Sales]) {
        return forbidden(&session);
    }
    page(
        StatusCode::OK,
        Some(&session),
        "inbox.html",
        "Inbox",
        "/inbox",
        minijinja::context! { me => session.staff.id },
    )
}

/// The conversation `raw` names, if this person's business owns it.
async fn visible_conversation(
    state: &AppState,
    session: &Session,
    raw: &str,
) -> Result<Option<ConversationRecord>, AppError> {
    let Ok(id) = ConversationId::parse(raw) else {
        return Ok(None);
    };
    Ok(state
        .store
        .conversation(id)
        .await?
        .filter(|c| c.tenant.as_str() == session.staff.tenant))
}

async fn handoff_page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let Some(handoff) = state
        .store
        .handoff(&id)
        .await?
        .filter(|h| h.tenant == session.staff.tenant)
    else {
        return Ok(not_found(&session, "handoff"));
    };
    let Some(conversation) =
        visible_conversation(&state, &session, &handoff.conversation_id).await?
    else {
        return Ok(not_found(&session, "conversation"));
    };
    let back = json!({"href": "/inbox", "label": "Inbox"});
    render_conversation(&state, &session, conversation, Some(handoff), back).await
}

async fn conversation_page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let Some(conversation) = visible_conversation(&state, &session, &id).await? else {
        return Ok(not_found(&session, "conversation"));
    };
    let handoff = state.store.open_handoff_of(conversation.id).await?;
    let back = json!({"href": "/conversations", "label": "Conversations"});
    render_conversation(&state, &session, conversation, handoff, back).await
}

async fn render_conversation(
    state: &AppState,
    session: &Session,
    conversation: ConversationRecord,
    handoff: Option<HandoffRecord>,
    back: Value,
) -> Result<Response, AppError> {
    let messages: Vec<Value> = state
        .store
        .list_messages(conversation.id, 500)
        .await?
        .iter()
        .map(views::message)
        .collect();
    let lead = state.store.lead_by_contact(conversation.contact_id).await?;
    let summary = match state.memory.summary(conversation.id).await {
        Ok(summary) => summary,
        Err(err) => {
            tracing::warn!(conversation.id = %conversation.id, error = %err, "no summary for the context card");
            None
        }
    };
    let handoff = match handoff {
        Some(h) => {
            let name = match &h.claimed_by {
                Some(id) => state.store.staff_by_id(id).await?.map(|s| s.name),
                None => None,
            };
            Some(views::handoff(
                &h,
                &session.staff.id,
                session.role == Role::Admin,
                name,
            ))
        }
        None => None,
    };
    let templates: Vec<Value> = if conversation.channel.as_str() == "whatsapp" {
        state
            .consent
            .policy(&conversation.tenant)
            .templates
            .iter()
            .map(|(name, t)| json!({"name": name, "body": t.body}))
            .collect()
    } else {
        Vec::new()
    };
    let name = views::contact_name(&conversation);
    Ok(page(
        StatusCode::OK,
        Some(session),
        "conversation.html",
        &name,
        "/inbox",
        minijinja::context! {
            back => back,
            contact => json!({"name": name, "id": conversation.contact_id.to_string()}),
            conversation => json!({
                "id": conversation.id.to_string(),
                "channel": conversation.channel.as_str(),
                "state": conversation.state,
            }),
            messages => messages,
            lead => lead.as_ref().map(views::lead),
            summary => summary,
            handoff => handoff,
            templates => templates,
        },
    ))
}

/// `GET /conversations/{id}/live`: the conversation's messages as they are recorded and sent
/// (`event: message`, the API's message shape), for the conversation view.
async fn live(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let Some(conversation) = visible_conversation(&state, &session, &id).await? else {
        return Ok(not_found(&session, "conversation"));
    };
    let shutdown = state.shutdown.clone();
    let stream = state
        .live
        .subscribe(&conversation_topic(conversation.id))
        .map(|payload| {
            Ok::<_, Infallible>(
                Event::default()
                    .event("message")
                    .json_data(&payload)
                    .unwrap_or_else(|_| Event::default().comment("skipped")),
            )
        })
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The contact a page names, if this person's business owns it.
pub(super) async fn visible_contact(
    state: &AppState,
    session: &Session,
    raw: &str,
) -> Result<Option<crate::store::ContactRecord>, AppError> {
    let Ok(id) = ContactId::parse(raw) else {
        return Ok(None);
    };
    Ok(state
        .store
        .contact(id)
        .await?
        .filter(|c| c.tenant.as_str() == session.staff.tenant))
}
