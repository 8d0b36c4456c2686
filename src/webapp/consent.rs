//! A contact's consent history (every opt-in, opt-out and help request, with its source and
//! proof), for sales; administrators also get the link to the audit export of the whole ledger.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::inbox::visible_contact;
use super::render::{error_page, forbidden, page};
use super::session::Session;
use crate::app::AppState;
use crate::domain::{ContactId, TenantId};
use crate::error::AppError;
use crate::staff::Role;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/contacts/{id}/consent", get(consent))
}

async fn consent(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let Ok(contact_id) = ContactId::parse(&id) else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such contact.",
        ));
    };
    let contact = visible_contact(&state, &session, &id).await?;
    let tenant =
        TenantId::parse(&session.staff.tenant).unwrap_or_else(|_| TenantId::default_tenant());
    // The ledger is kept per tenant under a keyed hash, so an erased contact's history is still
    // found, and only within this person's business.
    let history = state.consent.history(&tenant, contact_id).await?;
    if contact.is_none() && history.is_empty() {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such contact.",
        ));
    }
    let channel = contact.as_ref().map(|c| c.channel.as_str());
    let current = history
        .iter()
        .rev()
        .find(|e| {
            Some(e.channel.as_str()) == channel && matches!(e.action.as_str(), "opt_in" | "opt_out")
        })
        .map_or("no record", |e| {
            if e.action == "opt_out" {
                "opted out"
            } else {
                "opted in"
            }
        });
    let history: Vec<Value> = history
        .iter()
        .map(|e| {
            json!({
                "channel": e.channel, "action": e.action.replace('_', " "), "source": e.source,
                "proof": e.proof, "detail": e.detail, "created_at": e.created_at,
            })
        })
        .collect();
    let name = contact
        .as_ref()
        .map(|c| c.display_name.clone().unwrap_or_else(|| c.address.clone()))
        .unwrap_or_else(|| "an erased contact".to_owned());
    Ok(page(
        StatusCode::OK,
        Some(&session),
        "consent.html",
        "Consent",
        "/conversations",
        minijinja::context! {
            name => name, channel => channel, current => current, erased => contact.is_none(),
            history => history, may_export => session.role == Role::Admin,
        },
    ))
}
