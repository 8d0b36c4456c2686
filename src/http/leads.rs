//! Leads for staff: the list (by tier, by score), one lead with its history, and CSV imports
//! (a job with per-row errors). Handlers parse and answer; `leads` does the work.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::require_admin;
use super::rfc3339;
use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;
use crate::leads::{LeadId, LeadOrder, LeadRecord, Tier, import};

/// The largest CSV accepted.
const MAX_IMPORT_BYTES: usize = 20 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/leads", get(list))
        .route(
            "/api/v1/leads/import",
            post(start_import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route("/api/v1/leads/import/{id}", get(import_status))
        .route("/api/v1/leads/{id}", get(one))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    tenant: Option<String>,
    tier: Option<String>,
    sort: Option<String>,
    limit: Option<i64>,
}

fn tenant_param(raw: Option<&str>) -> Result<Option<TenantId>, AppError> {
    raw.map(TenantId::parse)
        .transpose()
        .map_err(AppError::bad_request)
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let tenant = tenant_param(query.tenant.as_deref())?;
    let tier = match query.tier.as_deref().filter(|t| !t.is_empty()) {
        Some(raw) => Some(Tier::parse(raw).ok_or_else(|| {
            AppError::bad_request(format!(
                "tier `{raw}` is not one of hot, warm, cold, low, invalid"
            ))
        })?),
        None => None,
    };
    let order = match query.sort.as_deref().unwrap_or("score") {
        "score" => LeadOrder::Score,
        "recent" => LeadOrder::Recent,
        other => {
            return Err(AppError::bad_request(format!(
                "sort `{other}` is not one of score, recent"
            )));
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let leads = state
        .store
        .list_leads(tenant.as_ref(), tier, order, limit)
        .await?;
    let items: Vec<Value> = leads.iter().map(lead_json).collect();
    Ok(Json(json!({ "leads": items })))
}

async fn one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let id = LeadId::parse(&id).map_err(|_| AppError::bad_request("the lead id is not a UUID"))?;
    let lead = state
        .store
        .lead(id)
        .await?
        .ok_or_else(|| AppError::not_found("no such lead"))?;
    let history: Vec<Value> = state
        .store
        .lead_history(id)
        .await?
        .iter()
        .map(|h| {
            json!({
                "from_score": h.from_score,
                "to_score": h.to_score,
                "from_tier": h.from_tier,
                "to_tier": h.to_tier,
                "reason": h.reason,
                "at": rfc3339(h.at),
            })
        })
        .collect();
    let mut body = lead_json(&lead);
    body["history"] = Value::Array(history);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct ImportQuery {
    tenant: Option<String>,
}

async fn start_import(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ImportQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), AppError> {
    require_admin(&state, &headers)?;
    let tenant = tenant_param(query.tenant.as_deref())?.unwrap_or_else(TenantId::default_tenant);
    if state.config.tenant(&tenant).is_none() {
        return Err(AppError::bad_request(format!(
            "tenant `{tenant}` is not configured"
        )));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| AppError::bad_request("the CSV is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(AppError::bad_request(
            "the CSV is empty; send a header row and rows",
        ));
    }
    let id = uuid::Uuid::now_v7();
    state
        .store
        .create_import(id, &tenant, state.clock.now_ms())
        .await?;
    tokio::spawn(import::run(state.leads.clone(), tenant, id, text));
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": id }))))
}

async fn import_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| AppError::bad_request("the import job id is not a UUID"))?;
    let status = state
        .store
        .import_status(id)
        .await?
        .ok_or_else(|| AppError::not_found("no such import job"))?;
    Ok(Json(serde_json::to_value(status).unwrap_or(Value::Null)))
}

/// A lead as the API shows it.
pub fn lead_json(lead: &LeadRecord) -> Value {
    let f = &lead.facts;
    json!({
        "id": lead.id,
        "tenant": lead.tenant,
        "contact": {
            "id": lead.contact_id,
            "name": f.full_name(),
            "first_name": f.first_name,
            "last_name": f.last_name,
            "email": f.email,
            "phone": f.phone,
            "company": f.company,
        },
        "score": lead.score,
        "tier": lead.tier,
        "grade": lead.tier,
        "confidence": lead.confidence,
        "factors": lead.factors,
        "facts": {
            "budget": f.budget,
            "timeline": f.timeline,
            "location": f.location,
            "property_type": f.property_type,
            "keywords": f.keywords,
        },
        "source": lead.source,
        "verification": lead.verification,
        "engagement": lead.engagement,
        "opted_out": lead.opted_out,
        "version": lead.version,
        "created_at": rfc3339(lead.created_at),
        "updated_at": rfc3339(lead.updated_at),
    })
}
