//! Pages from templates compiled into the binary (`templates/`), HTML-escaped, with the headers
//! every staff page carries: a strict content security policy (scripts and styles from this
//! origin only, no framing), no caching, no referrer leaks. Only these pages get those headers;
//! the chat widget's page keeps its own (it must stay frameable).

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value};
use serde::Serialize;

use super::session::Session;
use crate::staff::Role;

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "login.html",
    "error.html",
    "inbox.html",
    "conversation.html",
    "conversations.html",
    "leads.html",
    "lead.html",
    "knowledge.html",
    "consent.html",
);

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("when", when);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
    }
    env
});

/// Unix milliseconds as `2026-01-31 14:05 UTC`.
pub fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A navigation entry.
#[derive(Serialize)]
struct Nav {
    href: &'static str,
    label: &'static str,
    current: bool,
}

fn navigation(session: Option<&Session>, current: &str) -> Vec<Nav> {
    let Some(session) = session else {
        return Vec::new();
    };
    let mut items = Vec::new();
    if session.may(&[Role::Sales]) {
        items.push(("/inbox", "Inbox"));
        items.push(("/conversations", "Conversations"));
        items.push(("/leads", "Leads"));
    }
    if session.may(&[Role::Marketer]) {
        items.push(("/knowledge", "Knowledge"));
    }
    items
        .into_iter()
        .map(|(href, label)| Nav {
            href,
            label,
            current: current.starts_with(href),
        })
        .collect()
}

fn with_headers(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Renders `template` with `context` plus what every page needs (who is signed in, the
/// navigation, the CSRF token, the title).
pub fn page(
    status: StatusCode,
    session: Option<&Session>,
    template: &str,
    title: &str,
    path: &str,
    context: impl Serialize,
) -> Response {
    let user = session.map(|s| {
        minijinja::context! {
            name => s.staff.name,
            role => s.role.as_str(),
        }
    });
    let full = minijinja::context! {
        title => title,
        user => user,
        csrf => session.map(|s| s.csrf.clone()),
        nav => navigation(session, path),
        ..Value::from_serialize(&context)
    };
    match ENV.get_template(template).and_then(|t| t.render(full)) {
        Ok(html) => with_headers(status, html),
        Err(err) => {
            tracing::error!(template, error = %err, "a page could not be rendered");
            with_headers(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>Something went wrong on our side.</p>"
                    .to_owned(),
            )
        }
    }
}

/// An error page (403, 404, 429, ...) in the app's layout.
pub fn error_page(
    status: StatusCode,
    session: Option<&Session>,
    title: &str,
    message: &str,
) -> Response {
    page(
        status,
        session,
        "error.html",
        title,
        "",
        minijinja::context! { message => message, status => status.as_u16() },
    )
}

/// The 403 page for a role that may not open a page.
pub fn forbidden(session: &Session) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        Some(session),
        "Not allowed",
        &format!(
            "Your role ({}) does not give access to this page.",
            session.role.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_pages_escape_what_they_show() {
        LazyLock::force(&ENV);
        let response = error_page(
            StatusCode::NOT_FOUND,
            None,
            "Missing",
            "<script>alert(1)</script>",
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let headers = response.headers();
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}
