//! The staff web app at `/`: sign in and out, the live handoff inbox and conversation view for
//! sales, conversation and lead lists, the knowledge manager for marketers, and consent history.
//! Pages are rendered on the server from templates compiled into the binary; a little
//! hand-written JavaScript (`assets/app/`) adds live updates (server-sent events) and calls the
//! JSON API with the session cookie and the CSRF header. Roles decide navigation and access.

mod assets;
mod auth_pages;
mod consent;
pub mod csrf;
mod inbox;
mod knowledge;
mod lists;
mod render;
pub mod session;
mod views;

use std::sync::Arc;

use axum::Router;

use crate::app::AppState;

pub use session::{ClientAddr, Session, api_cookie_auth};

/// The web app's pages, scripts and styles.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(assets::routes())
        .merge(auth_pages::routes())
        .merge(inbox::routes())
        .merge(lists::routes())
        .merge(knowledge::routes())
        .merge(consent::routes())
}
