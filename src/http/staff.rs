//! Staff accounts and sign-in: administrators (or the admin token) create accounts; staff sign in
//! with email and password for a bearer session token and sign out to end it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;
use crate::http::ApiJson;
use crate::http::auth::{Principal, bearer, require_role};
use crate::staff::{self, MIN_PASSWORD_CHARS, Role, SignIn};
use crate::store::StaffRecord;
use crate::webapp::ClientAddr;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/staff", get(list).post(create))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
}

fn staff_json(staff: &StaffRecord) -> Value {
    json!({
        "id": staff.id,
        "tenant": staff.tenant,
        "email": staff.email,
        "name": staff.name,
        "role": staff.role,
        "created_at": super::rfc3339(staff.created_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStaff {
    email: String,
    name: String,
    role: Role,
    password: String,
    tenant: Option<String>,
}

/// `POST /api/v1/staff`: an administrator creates an account.
async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewStaff>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let principal = require_role(&state, &headers, &[Role::Admin]).await?;
    let tenant = match (&principal, request.tenant.as_deref()) {
        (Principal::Staff(me, _), _) => {
            TenantId::parse(&me.tenant).map_err(AppError::bad_request)?
        }
        (Principal::AdminToken, Some(t)) => TenantId::parse(t).map_err(AppError::bad_request)?,
        (Principal::AdminToken, None) => TenantId::default_tenant(),
    };
    if state.config.tenant(&tenant).is_none() {
        return Err(AppError::not_found(format!("no tenant `{tenant}`")));
    }
    let email = request.email.trim().to_lowercase();
    let valid_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid_email {
        return Err(AppError::bad_request("email is not a valid address"));
    }
    let name = request.name.trim();
    if name.is_empty() || name.len() > 120 {
        return Err(AppError::bad_request("name must be 1 to 120 characters"));
    }
    if request.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::bad_request(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let password_hash =
        staff::hash_password(&request.password).map_err(|e| AppError::unavailable(&e))?;
    let record = StaffRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_string(),
        email,
        name: name.to_owned(),
        role: request.role.as_str().to_owned(),
        password_hash,
        created_at: state.clock.now_ms(),
    };
    if !state.store.create_staff(&record).await? {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "exists",
            "an account with this email already exists",
        ));
    }
    tracing::info!(staff.id = %record.id, role = %record.role, "staff account created");
    Ok((StatusCode::CREATED, Json(staff_json(&record))))
}

/// `GET /api/v1/staff`: the tenant's accounts.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let principal = require_role(&state, &headers, &[Role::Admin]).await?;
    let tenant = match &principal {
        Principal::Staff(me, _) => TenantId::parse(&me.tenant).map_err(AppError::bad_request)?,
        Principal::AdminToken => TenantId::default_tenant(),
    };
    let staff = state.store.list_staff(&tenant).await?;
    Ok(Json(
        json!({"staff": staff.iter().map(staff_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
    tenant: Option<String>,
}

/// `POST /api/v1/auth/login`: email and password for a session token (rate limited per account
/// and per address: 429 past the limit).
async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(address): ClientAddr,
    ApiJson(request): ApiJson<Login>,
) -> Result<Json<Value>, AppError> {
    let tenant = match request.tenant.as_deref() {
        Some(t) => TenantId::parse(t).map_err(AppError::bad_request)?,
        None => TenantId::default_tenant(),
    };
    let outcome = staff::sign_in(
        &state.store,
        &state.login_throttle,
        state.clock.now_ms(),
        &tenant,
        &request.email,
        request.password,
        address,
    )
    .await?;
    match outcome {
        SignIn::Started {
            staff,
            token,
            expires_at,
        } => Ok(Json(json!({
            "token": token,
            "expires_at": super::rfc3339(expires_at),
            "staff": staff_json(&staff),
        }))),
        SignIn::Refused => Err(AppError::unauthorized("wrong email or password")),
        SignIn::Throttled => Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed sign-ins; wait 15 minutes and try again",
        )),
    }
}

/// `POST /api/v1/auth/logout`: ends the caller's session.
async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    if let Some(token) = bearer(&headers) {
        state
            .store
            .delete_session(&staff::token_hash(token))
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/auth/me`: who the token belongs to.
async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    match require_role(&state, &headers, &[Role::Sales, Role::Marketer]).await? {
        Principal::AdminToken => Ok(Json(json!({"role": "admin", "admin_token": true}))),
        Principal::Staff(staff, _) => Ok(Json(staff_json(&staff))),
    }
}
