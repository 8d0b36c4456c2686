//! The knowledge API (administrators and marketers, a marketer within their own business): upload
//! documents as a background job (multipart, field
//! `file` repeatable, optional `tags` and `tenant`), follow the job, list and delete documents,
//! and search. Handlers stay short: the work is in `crate::knowledge`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{Principal, require_role};
use super::{ApiJson, rfc3339};
use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;
use crate::knowledge::jobs::{document_name, parse_tags};
use crate::knowledge::{KnowledgeError, Upload};
use crate::staff::Role;

pub fn routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/knowledge/documents",
            post(upload).get(list).layer(DefaultBodyLimit::max(
                state.config.knowledge.max_upload_bytes,
            )),
        )
        .route("/api/v1/knowledge/documents/{id}", delete(remove))
        .route("/api/v1/knowledge/jobs/{id}", get(job))
        .route("/api/v1/knowledge/search", post(search))
        .route("/api/v1/knowledge/preview", post(preview))
}

impl From<KnowledgeError> for AppError {
    fn from(err: KnowledgeError) -> Self {
        match err {
            KnowledgeError::BadRequest(message) => AppError::bad_request(message),
            KnowledgeError::NotFound => AppError::not_found("no such knowledge document or job"),
            KnowledgeError::Store(err) => err.into(),
            KnowledgeError::Index(err) => {
                tracing::error!(error = %err, "knowledge index unavailable");
                AppError::unavailable(&"the knowledge index is unavailable")
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

fn tenant_of(state: &AppState, raw: Option<&str>) -> Result<TenantId, AppError> {
    let tenant = match raw {
        Some(raw) => TenantId::parse(raw).map_err(AppError::bad_request)?,
        None => TenantId::default_tenant(),
    };
    if state.config.tenant(&tenant).is_none() {
        return Err(AppError::bad_request(format!("unknown tenant `{tenant}`")));
    }
    Ok(tenant)
}

/// The tenant the caller acts on: a marketer's own; for the admin token, the one asked for.
fn tenant_for(
    state: &AppState,
    principal: &Principal,
    raw: Option<&str>,
) -> Result<TenantId, AppError> {
    match principal {
        Principal::Staff(staff, _) => TenantId::parse(&staff.tenant).map_err(AppError::bad_request),
        Principal::AdminToken => tenant_of(state, raw),
    }
}

async fn marketer(state: &AppState, headers: &HeaderMap) -> Result<Principal, AppError> {
    require_role(state, headers, &[Role::Marketer]).await
}

fn multipart_error(err: MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the upload is larger than PARLEY_KNOWLEDGE_MAX_UPLOAD_BYTES",
        )
    } else {
        AppError::bad_request(format!(
            "the multipart body is malformed: {}",
            err.body_text()
        ))
    }
}

/// `POST /api/v1/knowledge/documents`: 202 `{"job_id"}`.
async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TenantQuery>,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let principal = marketer(&state, &headers).await?;
    let mut uploads = Vec::new();
    let mut raw_tags = Vec::new();
    let mut tenant_field = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => {
                let raw_name = field.file_name().unwrap_or("").to_owned();
                let name = document_name(&raw_name)
                    .ok_or_else(|| AppError::bad_request("every `file` part needs a file name"))?;
                let bytes = field.bytes().await.map_err(multipart_error)?;
                uploads.push(Upload { name, bytes });
            }
            "tags" => raw_tags.push(field.text().await.map_err(multipart_error)?),
            "tenant" => tenant_field = Some(field.text().await.map_err(multipart_error)?),
            _ => {}
        }
    }
    if uploads.is_empty() {
        return Err(AppError::bad_request("send at least one `file` part"));
    }
    let tenant = tenant_for(
        &state,
        &principal,
        query.tenant.as_deref().or(tenant_field.as_deref()),
    )?;
    let tags = parse_tags(raw_tags.iter().map(String::as_str))?;
    let job_id = state.knowledge.start_job(&tenant, uploads, tags).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": job_id }))))
}

/// `GET /api/v1/knowledge/documents`.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, AppError> {
    let principal = marketer(&state, &headers).await?;
    let tenant = tenant_for(&state, &principal, query.tenant.as_deref())?;
    let documents = state.knowledge.documents(&tenant).await?;
    let items: Vec<Value> = documents
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "name": d.name,
                "version": d.version,
                "tags": d.tags,
                "chunks": d.chunks,
                "status": d.status,
                "error": d.error,
                "media_type": d.media_type,
                "uploaded_at": rfc3339(d.uploaded_at),
            })
        })
        .collect();
    Ok(Json(json!({ "documents": items })))
}

fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::bad_request(format!("`{raw}` is not a valid id")))
}

/// `DELETE /api/v1/knowledge/documents/{id}`: 204.
async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<StatusCode, AppError> {
    let principal = marketer(&state, &headers).await?;
    let tenant = tenant_for(&state, &principal, query.tenant.as_deref())?;
    state
        .knowledge
        .delete_document(&tenant, parse_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/knowledge/jobs/{id}`.
async fn job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, AppError> {
    let principal = marketer(&state, &headers).await?;
    let tenant = tenant_for(&state, &principal, query.tenant.as_deref())?;
    let job = state.knowledge.job(&tenant, parse_id(&id)?).await?;
    let errors: Vec<Value> = job
        .files
        .iter()
        .filter_map(|f| {
            f.error
                .as_ref()
                .map(|e| json!({"file": f.name, "error": e}))
        })
        .collect();
    Ok(Json(json!({
        "id": job.id,
        "status": job.status,
        "files_total": job.files_total,
        "files_done": job.files_done,
        "chunks_done": job.chunks_done,
        "files": job.files,
        "errors": errors,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    #[serde(default)]
    tags: Vec<String>,
    limit: Option<usize>,
    tenant: Option<String>,
}

/// `POST /api/v1/knowledge/search`.
async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<Value>, AppError> {
    let principal = marketer(&state, &headers).await?;
    let tenant = tenant_for(&state, &principal, request.tenant.as_deref())?;
    let tags = parse_tags(request.tags.iter().map(String::as_str))?;
    let passages = state
        .knowledge
        .search(&tenant, &request.query, &tags, request.limit.unwrap_or(5))
        .await?;
    let results: Vec<Value> = passages
        .iter()
        .map(|p| {
            json!({
                "chunk_id": p.chunk_id,
                "text": p.text,
                "score": p.score,
                "document": {"id": p.document_id, "name": p.document_name},
                "section": p.section,
                "page": p.page,
            })
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    question: String,
    tenant: Option<String>,
}

/// `POST /api/v1/knowledge/preview` with `{"question"}`: what the bot would answer, without
/// sending anything: the intent, the agent, its reply and confidence, and the passages found
/// (all documents) with those the reply cites marked.
async fn preview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PreviewRequest>,
) -> Result<Json<Value>, AppError> {
    let principal = marketer(&state, &headers).await?;
    let tenant = tenant_for(&state, &principal, request.tenant.as_deref())?;
    let preview = crate::agents::preview::preview(&state, &tenant, &request.question).await?;
    let cited: std::collections::HashSet<String> = preview
        .reply
        .as_ref()
        .map(|r| r.cited.iter().cloned().collect())
        .unwrap_or_default();
    let passages: Vec<Value> = preview
        .passages
        .iter()
        .map(|p| {
            json!({
                "chunk_id": p.chunk_id,
                "text": p.text,
                "score": p.score,
                "document": {"id": p.document_id, "name": p.document_name},
                "section": p.section,
                "page": p.page,
                "cited": cited.contains(&p.chunk_id.to_string()),
            })
        })
        .collect();
    Ok(Json(json!({
        "intent": preview.intent,
        "intent_confidence": preview.intent_confidence,
        "agent": preview.agent,
        "reply": preview.reply.as_ref().map(|r| json!({
            "text": r.text,
            "hand_off": r.hand_off,
            "confidence_factors": r.factors,
        })),
        "passages": passages,
    })))
}
