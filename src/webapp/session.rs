//! The browser session: an HTTP-only, `Secure`, `SameSite=Strict` cookie holding the same session
//! token the API hands out at `/api/v1/auth/login`. [`Session`] extracts the signed-in staff
//! member for pages (a visitor without one is sent to the sign-in page); [`api_cookie_auth`] lets
//! the JSON API accept the cookie too, turning it into the bearer token the API already checks,
//! but for anything that changes state only together with the CSRF header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::csrf;
use crate::app::AppState;
use crate::error::AppError;
use crate::staff::{Role, SESSION_TTL_MS, token_hash};
use crate::store::StaffRecord;

/// The cookie holding the session token.
pub const COOKIE: &str = "parley_session";

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HTTP-only, `Secure`, `SameSite=Strict` (browsers treat `localhost` and
/// `127.0.0.1` as secure, so this works in development over plain HTTP too).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie for a new session.
pub fn session_cookie(token: &str) -> HeaderValue {
    set_cookie(COOKIE, token, "/", SESSION_TTL_MS / 1000)
}

/// A cookie that removes the session cookie.
pub fn cleared_session_cookie() -> HeaderValue {
    set_cookie(COOKIE, "", "/", 0)
}

/// A signed-in staff member, for pages.
#[derive(Debug, Clone)]
pub struct Session {
    pub staff: StaffRecord,
    pub role: Role,
    /// The session token (the cookie's value); never rendered.
    pub token: String,
    /// The CSRF token pages embed.
    pub csrf: String,
}

impl Session {
    /// Whether this person may use a page meant for `roles` (administrators may use all).
    pub fn may(&self, roles: &[Role]) -> bool {
        self.role == Role::Admin || roles.contains(&self.role)
    }
}

/// Looks up the session the cookie names, if it is valid.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, AppError> {
    let Some(token) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let Some(staff) = state
        .store
        .session_staff(&token_hash(token), state.clock.now_ms())
        .await?
    else {
        return Ok(None);
    };
    let role = Role::parse(&staff.role).unwrap_or(Role::Sales);
    Ok(Some(Session {
        staff,
        role,
        token: token.to_owned(),
        csrf: csrf::token_for(token),
    }))
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match current(state, &parts.headers).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .filter(|p| p.starts_with('/') && !p.starts_with("//"))
                    .unwrap_or("/");
                let target = format!(
                    "/login?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Err(Redirect::to(&target).into_response())
            }
            Err(err) => Err(err.into_response()),
        }
    }
}

/// The client's address, when the server knows it: the TCP peer, or behind one of the
/// configured trusted proxies (`PARLEY_TRUSTED_PROXIES`), the address that proxy forwarded for.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientAddr(peer.map(|peer| {
            client_ip(peer, &forwarded, &state.config.trusted_proxies)
        })))
    }
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy, else the right-most
/// `X-Forwarded-For` address that is not a trusted proxy (what a client writes further left
/// cannot be trusted).
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|hop| !trusted.contains(hop))
        .copied()
        .unwrap_or(peer)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: a request to `/api/v1/` without an `Authorization` header but with the session
/// cookie is authenticated by that cookie, as if it carried the session's bearer token. A
/// state-changing one is authenticated only when it also carries the session's CSRF token in
/// `X-CSRF-Token`: without the header it goes on anonymous (so public endpoints such as the web
/// chat's keep working for a signed-in person on the same site, and protected ones answer 401),
/// and with a wrong one it is refused (403) before any handler runs.
pub async fn api_cookie_auth(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let applies = request.uri().path().starts_with("/api/v1/")
        && !headers.contains_key(header::AUTHORIZATION);
    if !applies {
        return next.run(request).await;
    }
    let Some(token) = cookie(headers, COOKIE).map(str::to_owned) else {
        return next.run(request).await;
    };
    if !is_safe(request.method()) {
        let Some(given) = headers.get(csrf::HEADER) else {
            return next.run(request).await;
        };
        if !csrf::matches(&csrf::token_for(&token), given.to_str().ok()) {
            return AppError::new(
                axum::http::StatusCode::FORBIDDEN,
                "csrf",
                "the X-CSRF-Token header does not match this session; reload the page",
            )
            .into_response();
        }
    }
    if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        value.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; parley_session=abc ; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn only_a_trusted_proxy_may_name_the_client() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        // Not behind a trusted proxy: the header is ignored.
        assert_eq!(client_ip(stranger, &["203.0.113.7"], &[proxy]), stranger);
        // Behind it: the right-most address the proxy did not add itself.
        assert_eq!(
            client_ip(proxy, &["1.2.3.4, 203.0.113.7"], &[proxy]),
            client
        );
        assert_eq!(
            client_ip(proxy, &["203.0.113.7, 10.0.0.1"], &[proxy]),
            client
        );
        assert_eq!(client_ip(proxy, &[], &[proxy]), proxy);
    }

    #[test]
    fn the_session_cookie_is_http_only_secure_and_strict() {
        let value = session_cookie("tok");
        let value = value.to_str().unwrap();
        for part in [
            "parley_session=tok",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(value.contains(part), "{value}");
        }
    }
}
