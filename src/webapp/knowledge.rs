//! The knowledge manager for marketers: the page with the drop zone, the document list and the
//! "test a question" panel. Its script uploads, replaces, deletes and asks through the knowledge
//! API (`/api/v1/knowledge/...`) with the session cookie and the CSRF header.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::render::{forbidden, page};
use super::session::Session;
use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;
use crate::staff::Role;

/// The tags a new upload gets unless the marketer changes them: every agent reads `faq`.
const DEFAULT_TAGS: &str = "faq";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/knowledge", get(knowledge))
}

async fn knowledge(
    State(state): State<Arc<AppState>>,
    session: Session,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Marketer]) {
        return Ok(forbidden(&session));
    }
    let tenant =
        TenantId::parse(&session.staff.tenant).unwrap_or_else(|_| TenantId::default_tenant());
    let documents: Vec<Value> = state
        .knowledge
        .documents(&tenant)
        .await?
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "name": d.name, "version": d.version, "tags": d.tags,
                "chunks": d.chunks, "status": d.status, "error": d.error,
                "uploaded_at": d.uploaded_at,
            })
        })
        .collect();
    let agent_tags: BTreeSet<&str> = state
        .agents
        .names()
        .filter_map(|n| state.agents.get(n))
        .flat_map(|a| a.knowledge_tags.iter().map(String::as_str))
        .collect();
    Ok(page(
        StatusCode::OK,
        Some(&session),
        "knowledge.html",
        "Knowledge",
        "/knowledge",
        minijinja::context! {
            documents => documents,
            agent_tags => agent_tags,
            default_tags => DEFAULT_TAGS,
        },
    ))
}
