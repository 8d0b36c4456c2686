//! A local fake of the CRM services Parley syncs leads to, on one port: HubSpot (contacts batch
//! upsert by email, tasks), Mautic (create, edit, do-not-contact), a generic webhook receiver
//! and a Slack incoming webhook. Every request is recorded exactly (path, auth, webhook headers,
//! body) with whether it was accepted, so a test asserts on what was delivered and how often.
//!
//! Answers follow each service's documentation: HubSpot's upsert returns `{"status":"COMPLETE",
//! "results":[{"id","properties":{"email",..},"new"}]}` and refuses invalid input with a 400
//! `VALIDATION_ERROR` for the whole batch; Mautic's create answers 201 `{"contact":{"id",..}}`;
//! auth failures get each service's 401. Scripts: [`FakeCrm::set_down`] (every request answered
//! with a status, as during an outage), [`FakeCrm::fail_next`] (one answer with a status and
//! `Retry-After`), [`FakeCrm::reject_email`] (HubSpot refuses batches containing it).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Which fake service a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Hubspot,
    Mautic,
    Webhook,
    Slack,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct CrmRequest {
    pub service: Service,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` when present.
    pub webhook_headers: BTreeMap<String, String>,
    pub body: Value,
    /// The body exactly as received (signatures are over these bytes).
    pub raw_body: String,
    /// Whether the fake answered with a success.
    pub accepted: bool,
}

#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    retry_after: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<CrmRequest>,
    down: Option<u16>,
    next: VecDeque<Failure>,
    rejected_emails: HashSet<String>,
    /// Refuse rejected emails record by record (207) instead of the whole batch (400).
    multi_status: bool,
    hubspot_ids: BTreeMap<String, String>,
    mautic_contacts: BTreeMap<u64, Value>,
    mautic_dnc: Vec<(u64, String)>,
    next_id: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FakeCrm {
    addr: SocketAddr,
    shared: Shared,
    _stop: Arc<DropGuard>,
}

impl FakeCrm {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::default();
        let app = Router::new()
            .route(
                "/crm/v3/objects/contacts/batch/upsert",
                post(hubspot_upsert),
            )
            .route("/crm/v3/objects/tasks", post(hubspot_task))
            .route("/api/contacts/new", post(mautic_new))
            .route("/api/contacts/{id}/edit", patch(mautic_edit))
            .route("/api/contacts/{id}/dnc/{channel}/add", post(mautic_dnc))
            .route("/webhook", post(webhook))
            .route("/slack", post(slack))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// `HUBSPOT_API_BASE` and the Mautic root (add credentials for `MAUTIC_URL`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// `MAUTIC_URL` with basic-auth credentials.
    pub fn mautic_url(&self) -> String {
        format!("http://api-user:api-pass@{}", self.addr)
    }
    /// `CRM_WEBHOOK_URL`.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }
    /// `SLACK_WEBHOOK_URL`.
    pub fn slack_url(&self) -> String {
        format!("http://{}/slack", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<CrmRequest> {
        lock(&self.shared).requests.clone()
    }

    /// The accepted requests to one service.
    pub fn accepted(&self, service: Service) -> Vec<CrmRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.service == service && r.accepted)
            .collect()
    }

    /// Answers every request with `status` (for example 503) until `None`.
    pub fn set_down(&self, status: Option<u16>) {
        lock(&self.shared).down = status;
    }

    /// Answers the next request (any service) with `status` and, if given, `Retry-After`.
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>) {
        lock(&self.shared).next.push_back(Failure {
            status,
            retry_after,
        });
    }

    /// HubSpot refuses (400, the whole batch) any batch with this email.
    pub fn reject_email(&self, email: &str) {
        lock(&self.shared)
            .rejected_emails
            .insert(email.to_lowercase());
    }

    /// HubSpot answers a batch with rejected emails 207 (multi-status: the others are
    /// upserted, the rejected ones listed in `errors`) instead of a 400 for the whole batch.
    pub fn use_multi_status(&self) {
        lock(&self.shared).multi_status = true;
    }

    /// Mautic's contacts by id (fields as last written).
    pub fn mautic_contacts(&self) -> BTreeMap<u64, Value> {
        lock(&self.shared).mautic_contacts.clone()
    }

    /// Mautic's do-not-contact entries: (contact id, channel).
    pub fn mautic_dnc(&self) -> Vec<(u64, String)> {
        lock(&self.shared).mautic_dnc.clone()
    }
}

/// Records the request; answers the scripted failure if any.
#[allow(clippy::result_large_err)] // the error is the answer itself, built once per request
fn arrive(
    shared: &Shared,
    service: Service,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<usize, Response> {
    let mut inner = lock(shared);
    let raw_body = String::from_utf8_lossy(body).into_owned();
    let webhook_headers = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .filter_map(|h| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|v| (h.to_owned(), v.to_owned()))
        })
        .collect();
    inner.requests.push(CrmRequest {
        service,
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        webhook_headers,
        body: serde_json::from_str(&raw_body).unwrap_or(Value::Null),
        raw_body,
        accepted: false,
    });
    let index = inner.requests.len() - 1;
    let failure = inner.down.map(|status| Failure {
        status,
        retry_after: None,
    });
    let failure = failure.or_else(|| inner.next.pop_front());
    if let Some(failure) = failure {
        let mut response = (
            StatusCode::from_u16(failure.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            axum::Json(
                json!({"status": "error", "message": "scripted failure", "category": "SCRIPTED"}),
            ),
        )
            .into_response();
        if let Some(secs) = failure.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        return Err(response);
    }
    let authorized = match service {
        Service::Hubspot => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7),
        Service::Mautic => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Basic ")),
        Service::Webhook | Service::Slack => true,
    };
    if !authorized {
        let body = match service {
            Service::Hubspot => {
                json!({"status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"})
            }
            _ => {
                json!({"errors": [{"code": 401, "message": "API authorization denied.", "type": "access_denied"}]})
            }
        };
        return Err((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    Ok(index)
}

fn accept(shared: &Shared, index: usize) {
    lock(shared).requests[index].accepted = true;
}

async fn hubspot_upsert(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = match arrive(&shared, Service::Hubspot, &method, &uri, &headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(inputs) = request["inputs"].as_array() else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR"}))).into_response();
    };
    if inputs.len() > 100 {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"status": "error", "message": "Batch size exceeds 100", "category": "VALIDATION_ERROR"}))).into_response();
    }
    let mut inner = lock(&shared);
    let emails: Vec<String> = inputs
        .iter()
        .map(|i| i["id"].as_str().unwrap_or("").to_lowercase())
        .collect();
    let multi_status = inner.multi_status;
    if let Some(bad) = emails
        .iter()
        .find(|e| inner.rejected_emails.contains(*e))
        .filter(|_| !multi_status)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "status": "error",
                "message": "Property values were not valid",
                "category": "VALIDATION_ERROR",
                "errors": [{"message": "Email address is invalid", "category": "VALIDATION_ERROR", "context": {"ids": [bad]}}]
            })),
        )
            .into_response();
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (input, email) in inputs.iter().zip(emails) {
        if inner.rejected_emails.contains(&email) {
            errors.push(json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Email address is invalid", "context": {"ids": [email]}}));
            continue;
        }
        let is_new = !inner.hubspot_ids.contains_key(&email);
        if is_new {
            inner.next_id += 1;
            let id = (1000 + inner.next_id).to_string();
            inner.hubspot_ids.insert(email.clone(), id);
        }
        let mut properties = input["properties"].clone();
        properties["email"] = json!(email);
        results.push(
            json!({"id": inner.hubspot_ids[&email], "properties": properties, "new": is_new}),
        );
    }
    drop(inner);
    accept(&shared, index);
    if errors.is_empty() {
        axum::Json(json!({"status": "COMPLETE", "results": results})).into_response()
    } else {
        (
            StatusCode::MULTI_STATUS,
            axum::Json(json!({"status": "COMPLETE", "results": results, "errors": errors, "numErrors": errors.len()})),
        )
            .into_response()
    }
}

async fn hubspot_task(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = match arrive(&shared, Service::Hubspot, &method, &uri, &headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    accept(&shared, index);
    let id = {
        let mut inner = lock(&shared);
        inner.next_id += 1;
        (9000 + inner.next_id).to_string()
    };
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "properties": {}})),
    )
        .into_response()
}

async fn mautic_new(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = match arrive(&shared, Service::Mautic, &method, &uri, &headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let fields: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let id = {
        let mut inner = lock(&shared);
        inner.next_id += 1;
        let id = inner.next_id;
        inner.mautic_contacts.insert(id, fields.clone());
        id
    };
    accept(&shared, index);
    (
        StatusCode::CREATED,
        axum::Json(json!({"contact": {"id": id, "fields": {"all": fields}}})),
    )
        .into_response()
}

async fn mautic_edit(
    State(shared): State<Shared>,
    Path(id): Path<u64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = match arrive(&shared, Service::Mautic, &method, &uri, &headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let fields: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let mut inner = lock(&shared);
    let Some(contact) = inner.mautic_contacts.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"errors": [{"code": 404, "message": "Item was not found.", "type": null}]}),
            ),
        )
            .into_response();
    };
    for (k, v) in fields.as_object().into_iter().flatten() {
        contact[k] = v.clone();
    }
    let all = contact.clone();
    drop(inner);
    accept(&shared, index);
    axum::Json(json!({"contact": {"id": id, "fields": {"all": all}}})).into_response()
}

async fn mautic_dnc(
    State(shared): State<Shared>,
    Path((id, channel)): Path<(u64, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = match arrive(&shared, Service::Mautic, &method, &uri, &headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut inner = lock(&shared);
    if !inner.mautic_contacts.contains_key(&id) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"errors": [{"code": 404, "message": "Item was not found.", "type": null}]}),
            ),
        )
            .into_response();
    }
    inner.mautic_dnc.push((id, channel));
    drop(inner);
    accept(&shared, index);
    axum::Json(json!({"contact": {"id": id}})).into_response()
}

async fn webhook(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match arrive(&shared, Service::Webhook, &method, &uri, &headers, &body) {
        Ok(index) => {
            accept(&shared, index);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

async fn slack(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match arrive(&shared, Service::Slack, &method, &uri, &headers, &body) {
        Ok(index) => {
            accept(&shared, index);
            "ok".into_response()
        }
        Err(r) => r,
    }
}
