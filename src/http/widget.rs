//! The embeddable web chat widget: `/widget.js` (the loader a tenant puts on its website: a chat
//! bubble opening an iframe), `/widget?tenant=` (the chat page in that iframe, with the tenant's
//! name and consent line) and the page's script and stylesheet. All are compiled into the binary;
//! the chat speaks the public web channel API, so the widget needs no secret.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;

const LOADER_JS: &str = include_str!("../../assets/widget/widget.js");
const CHAT_JS: &str = include_str!("../../assets/widget/chat.js");
const CHAT_CSS: &str = include_str!("../../assets/widget/widget.css");
const CHAT_PAGE: &str = include_str!("../../assets/widget/widget.html");

/// Scripts and styles may be cached briefly; a deploy reaches visitors within five minutes.
const CACHE_ASSET: &str = "public, max-age=300";
/// The page may be framed by any site (it is the widget's iframe) but runs only its own script.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'self'";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/widget.js", get(loader))
        .route("/widget", get(page))
        .route("/widget/chat.js", get(chat_script))
        .route("/widget/widget.css", get(stylesheet))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, CACHE_ASSET),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn loader() -> Response {
    let mut response = asset("text/javascript; charset=utf-8", LOADER_JS);
    // Any website may load the loader script.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn chat_script() -> Response {
    asset("text/javascript; charset=utf-8", CHAT_JS)
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", CHAT_CSS)
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    tenant: Option<String>,
}

async fn page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<PageQuery>,
) -> Result<Response, AppError> {
    let raw = query.tenant.as_deref().unwrap_or("default");
    let tenant_id = TenantId::parse(raw).map_err(AppError::bad_request)?;
    let tenant = state
        .config
        .tenant(&tenant_id)
        .ok_or_else(|| AppError::not_found(format!("no tenant `{tenant_id}`")))?;
    let html = render_page(tenant_id.as_str(), &tenant.name).map_err(|e| {
        AppError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "widget_unavailable",
            format!("the widget page could not be rendered: {e}"),
        )
    })?;
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    Ok(response)
}

/// The chat page for a tenant, every value HTML-escaped.
fn render_page(tenant: &str, business: &str) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("widget.html", CHAT_PAGE)?;
    let consent_line = format!(
        "You are chatting with {business}'s assistant; a person can take over. Messages are kept \
         to answer you. Type STOP at any time to stop messages, START to resume."
    );
    env.get_template("widget.html")?
        .render(minijinja::context! {
            tenant => tenant,
            business => business,
            consent_line => consent_line,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_the_business_name_and_names_its_controls() {
        let html = render_page("default", "<script>x</script> & Co").unwrap();
        assert!(!html.contains("<script>x"));
        // minijinja's HTML escaping also escapes `/`.
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2f;script&gt; &amp; Co"),
            "{html}"
        );
        assert!(html.contains("<label for=\"chat-input\""));
        assert!(html.contains("Type STOP at any time"));
        assert!(html.contains("data-tenant=\"default\""));
    }
}
