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
