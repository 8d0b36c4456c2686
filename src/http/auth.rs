//! Who may call what. `/api/v1` takes `Authorization: Bearer <token>` (the admin token acts as an
//! administrator). A web-chat visitor reads their own conversation by proving its visitor id: the
//! web conversation id is derived from the visitor id, so knowing the id (a random secret kept in
//! the visitor's browser) is the credential, and nobody can read another visitor's thread.

use axum::http::HeaderMap;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::domain::{Channel, ConversationId};
use crate::error::AppError;
use crate::staff::Role;

/// Whether the request carries the admin bearer token.
pub fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    let expected = state.admin_token.expose_secret().as_bytes();
    token.trim().as_bytes().ct_eq(expected).into()
}

/// Refuses unless the request is from an administrator.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    if is_admin(state, headers) {
        Ok(())
    } else {
        Err(AppError::unauthorized(
            "send Authorization: Bearer <token> with a valid token",
        ))
    }
}

/// Refuses unless the caller is an administrator or the web visitor whose conversation this is.
pub fn require_conversation_access(
    state: &AppState,
    headers: &HeaderMap,
    conversation: ConversationId,
    visitor_id: Option<&str>,
) -> Result<(), AppError> {
    if is_admin(state, headers) {
        return Ok(());
    }
    if let Some(visitor) = visitor_id {
        let owns =
            state.config.tenants.keys().any(|tenant| {
                ConversationId::derive(tenant, Channel::Web, visitor) == conversation
            });
        if owns {
            return Ok(());
        }
    }
    Err(AppError::unauthorized(
        "send Authorization: Bearer <token>, or the visitor_id this web conversation belongs to",
    ))
}

/// Who is calling `/api/v1`.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The admin token (automation, first set-up).
    AdminToken,
    /// A signed-in staff member.
    Staff(crate::store::StaffRecord, Role),
}

impl Principal {
    pub fn role(&self) -> Role {
        match self {
            Principal::AdminToken => Role::Admin,
            Principal::Staff(_, role) => *role,
        }
    }

    /// The staff id, or `None` for the admin token.
    pub fn staff_id(&self) -> Option<&str> {
        match self {
            Principal::AdminToken => None,
            Principal::Staff(staff, _) => Some(&staff.id),
        }
    }

    /// Whether the caller may act on a tenant's data.
    pub fn may_see_tenant(&self, tenant: &str) -> bool {
        match self {
            Principal::AdminToken => true,
            Principal::Staff(staff, _) => staff.tenant == tenant,
        }
    }
}

/// The bearer token of the request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Resolves the caller and requires one of `roles` (an administrator always passes): 401 without
/// valid credentials, 403 with the wrong role.
pub async fn require_role(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
) -> Result<Principal, AppError> {
    if is_admin(state, headers) {
        return Ok(Principal::AdminToken);
    }
    let Some(token) = bearer(headers) else {
        return Err(AppError::unauthorized(
            "send Authorization: Bearer <token> with a valid token",
        ));
    };
    let staff = state
        .store
        .session_staff(&crate::staff::token_hash(token), state.clock.now_ms())
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("the session has expired or does not exist; sign in again")
        })?;
    let role = Role::parse(&staff.role).unwrap_or(Role::Sales);
    if role != Role::Admin && !roles.contains(&role) {
        return Err(AppError::forbidden("your role does not allow this"));
    }
    Ok(Principal::Staff(staff, role))
}
