//! The one error type at the HTTP boundary.
//!
//! Handlers return `AppError`; it becomes `{"error": "<code>", "message": "...", "request_id":
//! "..."}` with the right status. Internal causes are logged once, inside the request span, and
//! never shown to the caller. `json_errors` (middleware) fills in the request id and turns any
//! other error response (a body-limit rejection, an unmatched route) into the same shape.

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answered to an HTTP caller.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// What `AppError` leaves on a response for `json_errors` to render.
#[derive(Debug, Clone)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the input is malformed; the message says what was wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: missing or wrong credentials or signature.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: a backend is unavailable. The cause is logged here, once, and not shown.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "backend unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a backend is unavailable; nothing was lost, please retry",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        AppError::unavailable(&err)
    }
}

impl From<crate::pipeline::RecordError> for AppError {
    fn from(err: crate::pipeline::RecordError) -> Self {
        match err {
            crate::pipeline::RecordError::ShuttingDown => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "Parley is restarting; please send it again",
            ),
            crate::pipeline::RecordError::Store(cause) => AppError::unavailable(&cause),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(ErrorBody {
            code: self.code,
            message: self.message,
        });
        response
    }
}

/// Renders every error response as the JSON error shape with the request's id.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let (code, message) = match parts.extensions.remove::<ErrorBody>() {
        Some(err) => (err.code, err.message),
        None => {
            let is_json = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            // JSON errors keep their body; so do the staff web app's HTML error pages.
            let is_page = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
            if is_json || is_page {
                return Response::from_parts(parts, body);
            }
            default_for(status)
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = Json(json!({"error": code, "message": message, "request_id": request_id}));
    let mut rendered = body.into_response();
    *rendered.status_mut() = status;
    let (rendered_parts, rendered_body) = rendered.into_parts();
    parts.headers.extend(rendered_parts.headers);
    Response::from_parts(parts, Body::new(rendered_body))
}

fn default_for(status: StatusCode) -> (&'static str, String) {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than this endpoint accepts".to_owned(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json".to_owned(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            ("bad_request", "the request is malformed".to_owned())
        }
        s if s.is_server_error() => ("internal", "something went wrong on our side".to_owned()),
        _ => (
            "error",
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned(),
        ),
    }
}
