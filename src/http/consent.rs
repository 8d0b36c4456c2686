//! Consent and contacts over HTTP: a contact's consent state and history, recording consent from
//! another source (form, import, staff) with its proof, the CSV audit export, GDPR erasure, the
//! contact's time zone, and queuing a staff or automation message through the consent gate.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::consent::{ConsentAction, ConsentSource, NewConsentEvent};
use crate::domain::{Channel, ContactId, ConversationId, TenantId};
use crate::error::AppError;
use crate::http::ApiJson;
use crate::http::auth::require_admin;
use crate::pipeline::compose::{self, Body, ComposeError, ComposeOutcome, Sender};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/contacts/{id}/consent",
            get(consent_of).post(record_consent),
        )
        .route(
            "/api/v1/contacts/{id}",
            axum::routing::delete(erase).patch(update_contact),
        )
        .route("/api/v1/consent/export", get(export))
        .route("/api/v1/conversations/{id}/messages", post(send_message))
}

fn contact_id(raw: &str) -> Result<ContactId, AppError> {
    ContactId::parse(raw).map_err(|_| AppError::bad_request("the contact id is not a valid id"))
}

fn tenant_param(raw: Option<&str>) -> Result<TenantId, AppError> {
    match raw {
        Some(raw) => TenantId::parse(raw).map_err(AppError::bad_request),
        None => Ok(TenantId::default_tenant()),
    }
}

#[derive(Debug, Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

/// `GET /api/v1/contacts/{id}/consent`: the current state per channel and the full history. An
/// erased contact's history is still there (the ledger keeps it under a keyed hash).
async fn consent_of(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let id = contact_id(&id)?;
    let contact = state.store.contact(id).await?;
    let tenant = match &contact {
        Some(c) => c.tenant.clone(),
        None => tenant_param(query.tenant.as_deref())?,
    };
    let history = state.consent.history(&tenant, id).await?;
    if contact.is_none() && history.is_empty() {
        return Err(AppError::not_found("no such contact"));
    }
    // The current state comes from the same read as the history, so the two always agree (an
    // event appended between two reads could otherwise show in one and not the other).
    let mut latest: std::collections::BTreeMap<&str, (ConsentAction, i64)> = Default::default();
    for event in &history {
        if let Some(action @ (ConsentAction::OptIn | ConsentAction::OptOut)) =
            ConsentAction::parse(&event.action)
        {
            latest.insert(event.channel.as_str(), (action, event.created_at));
        }
    }
    let current: Vec<(String, ConsentAction, i64)> = latest
        .into_iter()
        .map(|(channel, (action, since))| (channel.to_owned(), action, since))
        .collect();
    let state_on = |channel: &str| {
        current
            .iter()
            .find(|(c, _, _)| c == channel)
            .map(|(_, action, _)| match action {
                ConsentAction::OptOut => "opted_out",
                _ => "opted_in",
            })
            .unwrap_or("no_record")
    };
    Ok(Json(json!({
        "contact_id": id,
        "tenant": tenant,
        "erased": contact.is_none(),
        "channel": contact.as_ref().map(|c| c.channel),
        "state": contact.as_ref().map(|c| state_on(c.channel.as_str())),
        "channels": current.iter().map(|(channel, action, since)| json!({
            "channel": channel,
            "state": if *action == ConsentAction::OptOut { "opted_out" } else { "opted_in" },
            "since": super::rfc3339(*since),
        })).collect::<Vec<_>>(),
        "history": history.iter().map(|e| json!({
            "id": e.id,
            "channel": e.channel,
            "action": e.action,
            "source": e.source,
            "proof": e.proof,
            "detail": e.detail,
            "created_at": super::rfc3339(e.created_at),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentRecordRequest {
    /// `opt_in` or `opt_out`.
    action: ConsentAction,
    /// `form`, `import`, `staff` or `api`.
    source: ConsentSource,
    /// The evidence: a form submission id, an import file and row, a staff note.
    proof: String,
    /// Defaults to the contact's own channel.
    channel: Option<Channel>,
}

/// `POST /api/v1/contacts/{id}/consent`: records consent given or withdrawn elsewhere.
async fn record_consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ConsentRecordRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    require_admin(&state, &headers)?;
    let id = contact_id(&id)?;
    let contact = state
        .store
        .contact(id)
        .await?
        .ok_or_else(|| AppError::not_found("no such contact"))?;
    if request.action == ConsentAction::Help {
        return Err(AppError::bad_request("action must be opt_in or opt_out"));
    }
    if !matches!(
        request.source,
        ConsentSource::Form | ConsentSource::Import | ConsentSource::Staff | ConsentSource::Api
    ) {
        return Err(AppError::bad_request(
            "source must be form, import, staff or api",
        ));
    }
    let proof = request.proof.trim();
    if proof.is_empty() || proof.len() > 512 {
        return Err(AppError::bad_request(
            "proof must say where the consent comes from (1 to 512 characters)",
        ));
    }
    let event = NewConsentEvent {
        tenant: contact.tenant.clone(),
        contact: id,
        channel: request.channel.unwrap_or(contact.channel),
        action: request.action,
        source: request.source,
        proof: Some(proof.to_owned()),
        detail: None,
        at_ms: state.clock.now_ms(),
    };
    state.consent.record(&event).await?;
    if event.action == ConsentAction::OptOut {
        crate::crm::on_opt_out(&state, &event.tenant, id, event.channel).await;
    }
    tracing::info!(contact.id = %id, action = event.action.as_str(), source = event.source.as_str(), "consent recorded");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "contact_id": id,
            "channel": event.channel,
            "action": event.action,
            "source": event.source,
            "created_at": super::rfc3339(event.at_ms),
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    /// RFC 3339 time or Unix milliseconds; everything when absent.
    since: Option<String>,
    tenant: Option<String>,
}

/// `GET /api/v1/consent/export?since=`: the ledger as CSV, for audits.
async fn export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ExportQuery>,
) -> Result<Response, AppError> {
    // Administrators only: the admin token (any tenant) or a staff administrator (their own).
    let principal = crate::http::auth::require_role(&state, &headers, &[]).await?;
    let since = match query.since.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(raw) => match raw.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => raw
                .parse::<jiff::Timestamp>()
                .map_err(|_| {
                    AppError::bad_request(
                        "since must be an RFC 3339 time (2026-01-31T00:00:00Z) or Unix milliseconds",
                    )
                })?
                .as_millisecond(),
        },
    };
    let tenant = match &principal {
        crate::http::auth::Principal::Staff(staff, _) => {
            Some(TenantId::parse(&staff.tenant).map_err(AppError::bad_request)?)
        }
        crate::http::auth::Principal::AdminToken => query
            .tenant
            .as_deref()
            .map(TenantId::parse)
            .transpose()
            .map_err(AppError::bad_request)?,
    };
    let rows = state.store.consent_export(tenant.as_ref(), since).await?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "event_id",
        "tenant",
        "subject",
        "contact_id",
        "channel",
        "action",
        "source",
        "proof",
        "detail",
        "created_at",
    ])
    .map_err(|e| AppError::unavailable(&e))?;
    for row in rows {
        csv.write_record([
            row.id.as_str(),
            row.tenant_id.as_str(),
            row.subject.as_str(),
            row.contact_id.as_deref().unwrap_or(""),
            row.channel.as_str(),
            row.action.as_str(),
            row.source.as_str(),
            row.proof.as_deref().unwrap_or(""),
            row.detail.as_deref().unwrap_or(""),
            super::rfc3339(row.created_at).as_str(),
        ])
        .map_err(|e| AppError::unavailable(&e))?;
    }
    let body = csv.into_inner().map_err(|e| AppError::unavailable(&e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"consent-ledger.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// `DELETE /api/v1/contacts/{id}`: erases the contact's personal data and messages (GDPR). The
/// consent ledger keeps its events under the keyed hash, so an opt-out survives the erasure.
async fn erase(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let id = contact_id(&id)?;
    let conversations = state
        .store
        .erase_contact(id)
        .await?
        .ok_or_else(|| AppError::not_found("no such contact"))?;
    state.leads.recent.forget(id);
    for conversation in &conversations {
        if let Err(err) = state.memory.forget(*conversation).await {
            tracing::warn!(conversation.id = %conversation, error = %err, "could not clear an erased conversation's memory; it expires on its own");
        }
    }
    tracing::info!(contact.id = %id, conversations = conversations.len(), "contact erased");
    Ok(Json(json!({
        "contact_id": id,
        "erased": true,
        "conversations": conversations.len(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactUpdate {
    /// IANA time zone name, for quiet hours.
    time_zone: String,
}

/// `PATCH /api/v1/contacts/{id}`: sets the contact's time zone.
async fn update_contact(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<ContactUpdate>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &headers)?;
    let id = contact_id(&id)?;
    let zone = update.time_zone.trim();
    if jiff::tz::TimeZone::get(zone).is_err() {
        return Err(AppError::bad_request(format!(
            "time_zone `{zone}` is not an IANA time zone name such as Asia/Kolkata"
        )));
    }
    if !state
        .store
        .set_contact_time_zone(id, zone, state.clock.now_ms())
        .await?
    {
        return Err(AppError::not_found("no such contact"));
    }
    Ok(Json(json!({"contact_id": id, "time_zone": zone})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    text: Option<String>,
    template: Option<TemplateRequest>,
    /// Treat it as proactive even if the prospect wrote recently (follow-ups, campaigns).
    #[serde(default)]
    proactive: bool,
    /// `staff` (default) or `automation`.
    #[serde(default)]
    author: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateRequest {
    name: String,
    #[serde(default)]
    params: Vec<String>,
}

/// `POST /api/v1/conversations/{id}/messages`: queues a staff or automation message through the
/// consent gate. 202 when queued (or deferred by quiet hours, with `deliver_after`); 409 with the
/// gate's reason when refused (the refusal is recorded on the message).
async fn send_message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Response, AppError> {
    require_admin(&state, &headers)?;
    let id = ConversationId::parse(&id)
        .map_err(|_| AppError::bad_request("the conversation id is not a valid id"))?;
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
    let sender = match request.author.as_deref() {
        None | Some("staff") => Sender::Staff,
        Some("automation") => Sender::Automation,
        Some(_) => return Err(AppError::bad_request("author must be staff or automation")),
    };
    let composed = compose::queue_message(&state, id, sender, body, request.proactive)
        .await
        .map_err(|err| match err {
            ComposeError::NoConversation => AppError::not_found("no such conversation"),
            ComposeError::Store(e) => AppError::unavailable(&e),
            other => AppError::bad_request(other.to_string()),
        })?;
    Ok(composed_response(&headers, &composed))
}

/// How a queued message is answered: 202 when queued or deferred, 409 with the gate's reason when
/// refused (the refusal is recorded on the message).
pub(super) fn composed_response(headers: &HeaderMap, composed: &compose::Composed) -> Response {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match composed.outcome {
        ComposeOutcome::Queued => (
            StatusCode::ACCEPTED,
            Json(json!({"id": composed.id, "status": "queued", "purpose": composed.purpose.as_str()})),
        )
            .into_response(),
        ComposeOutcome::Deferred { until_ms, reason } => (
            StatusCode::ACCEPTED,
            Json(json!({
                "id": composed.id,
                "status": "deferred",
                "purpose": composed.purpose.as_str(),
                "reason": reason.as_str(),
                "deliver_after": super::rfc3339(until_ms),
            })),
        )
            .into_response(),
        ComposeOutcome::Blocked(reason) => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": reason.as_str(),
                "message": format!("not sent: {}", reason.explain()),
                "request_id": request_id,
                "message_id": composed.id,
                "status": "blocked",
            })),
        )
            .into_response(),
    }
}
