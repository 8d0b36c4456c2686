//! The web app's stylesheet and scripts, compiled into the binary and served under `/app/`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

const CSS: &str = include_str!("../../assets/app/app.css");
const APP_JS: &str = include_str!("../../assets/app/app.js");
const INBOX_JS: &str = include_str!("../../assets/app/inbox.js");
const CONVERSATION_JS: &str = include_str!("../../assets/app/conversation.js");
const KNOWLEDGE_JS: &str = include_str!("../../assets/app/knowledge.js");

/// Short caching: a deploy reaches everyone within five minutes.
const CACHE: &str = "public, max-age=300";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/app/app.css", get(|| async { asset(STYLE, CSS) }))
        .route("/app/app.js", get(|| async { asset(SCRIPT, APP_JS) }))
        .route("/app/inbox.js", get(|| async { asset(SCRIPT, INBOX_JS) }))
        .route(
            "/app/conversation.js",
            get(|| async { asset(SCRIPT, CONVERSATION_JS) }),
        )
        .route(
            "/app/knowledge.js",
            get(|| async { asset(SCRIPT, KNOWLEDGE_JS) }),
        )
}

const STYLE: &str = "text/css; charset=utf-8";
const SCRIPT: &str = "text/javascript; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, CACHE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
