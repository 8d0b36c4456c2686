//! Signing in and out in the browser, and the start page that sends each role where its work is
//! (sales to the inbox, marketers to the knowledge manager). The sign-in form is protected by a
//! double-submit CSRF cookie and by the same rate limit as the API's sign-in.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::csrf;
use super::render::{error_page, page};
use super::session::{self, ClientAddr, Session};
use crate::app::AppState;
use crate::domain::TenantId;
use crate::error::AppError;
use crate::staff::{self, Role, SignIn, token_hash};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(start))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
}

/// Where a role starts.
fn home_of(role: Role) -> &'static str {
    match role {
        Role::Marketer => "/knowledge",
        Role::Admin | Role::Sales => "/inbox",
    }
}

async fn start(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    Ok(match session::current(&state, &headers).await? {
        Some(session) => Redirect::to(home_of(session.role)).into_response(),
        None => Redirect::to("/login").into_response(),
    })
}

/// A local path to go back to after signing in (never another site).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("")
        .to_owned()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    /// The business to sign in to, for accounts of a tenant other than `default`.
    tenant: Option<String>,
}

/// What the sign-in form shows and carries along.
struct FormState<'a> {
    error: Option<&'a str>,
    email: &'a str,
    next: &'a str,
    tenant: Option<&'a str>,
}

fn form_page(status: StatusCode, form: FormState<'_>) -> Response {
    let token = csrf::random_token();
    let mut response = page(
        status,
        None,
        "login.html",
        "Sign in",
        "/login",
        minijinja::context! {
            error => form.error, email => form.email, next => form.next, tenant => form.tenant,
            login_csrf => token,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(csrf::LOGIN_COOKIE, &token, "/login", 60 * 60),
    );
    response
}

async fn login_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    if let Some(session) = session::current(&state, &headers).await? {
        return Ok(Redirect::to(home_of(session.role)).into_response());
    }
    let next = safe_next(query.next.as_deref());
    Ok(form_page(
        StatusCode::OK,
        FormState {
            error: None,
            email: "",
            next: &next,
            tenant: query.tenant.as_deref(),
        },
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    csrf: Option<String>,
    next: Option<String>,
    tenant: Option<String>,
}

async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let next = safe_next(form.next.as_deref());
    let tenant_raw = form.tenant.as_deref().filter(|t| !t.is_empty());
    let again = |status, error| {
        form_page(
            status,
            FormState {
                error: Some(error),
                email: &form.email,
                next: &next,
                tenant: tenant_raw,
            },
        )
    };
    let expected = session::cookie(&headers, csrf::LOGIN_COOKIE).unwrap_or("");
    if !csrf::matches(expected, form.csrf.as_deref()) {
        return Ok(again(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this site. Please sign in again.",
        ));
    }
    let Ok(tenant) = tenant_raw.map_or(Ok(TenantId::default_tenant()), TenantId::parse) else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "That business is not known here.",
        ));
    };
    let outcome = staff::sign_in(
        &state.store,
        &state.login_throttle,
        state.clock.now_ms(),
        &tenant,
        &form.email,
        form.password.clone(),
        address,
    )
    .await?;
    match outcome {
        SignIn::Started { staff, token, .. } => {
            let role = Role::parse(&staff.role).unwrap_or(Role::Sales);
            let target = if next.is_empty() {
                home_of(role).to_owned()
            } else {
                next.clone()
            };
            let mut response = Redirect::to(&target).into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, session::session_cookie(&token));
            headers.append(
                header::SET_COOKIE,
                session::set_cookie(csrf::LOGIN_COOKIE, "", "/login", 0),
            );
            Ok(response)
        }
        SignIn::Refused => Ok(again(StatusCode::UNAUTHORIZED, "Wrong email or password.")),
        SignIn::Throttled => Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins. Wait 15 minutes and try again.",
        )),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    if !csrf::matches(&session.csrf, form.csrf.as_deref()) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Form refused",
            "The form did not carry this page's security token. Reload the page and try again.",
        ));
    }
    state
        .store
        .delete_session(&token_hash(&session.token))
        .await?;
    tracing::info!(staff.id = %session.staff.id, "signed out");
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, session::cleared_session_cookie());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/inbox/1")), "/inbox/1");
        assert_eq!(safe_next(Some("//evil.example/")), "");
        assert_eq!(safe_next(Some("https://evil.example/")), "");
        assert_eq!(safe_next(Some("/\\evil.example")), "");
        assert_eq!(safe_next(None), "");
    }
}
