//! CRM sync administration: the dead letters (jobs a CRM refused, or that ran out of attempts)
//! and their replay, which puts a job back in the outbox with fresh attempts.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::require_admin;
use super::rfc3339;
use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/crm/dead-letters", get(dead_letters))
        .route("/api/v1/crm/dead-letters/{id}/retry", post(retry))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    tenant: Option<String>,
    limit: Option<i64>,
}

async fn dead_letters(
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
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let letters = state.store.crm_dead_letters(tenant.as_ref(), limit).await?;
    let items: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "tenant": d.tenant,
                "lead_id": d.lead_id,
                "adapter": d.adapter,
                "kind": d.kind,
                "attempts": d.attempts,
                "error": d.last_error,
                "created_at": rfc3339(d.created_at),
                "updated_at": rfc3339(d.updated_at),
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": items })))
}

async fn retry(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    require_admin(&state, &headers)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| AppError::bad_request("the dead letter id is not a UUID"))?;
    if !state.store.crm_replay(id, state.clock.now_ms()).await? {
        return Err(AppError::not_found("no dead letter has this id"));
    }
    state.crm.wakeup.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "pending" })),
    ))
}
