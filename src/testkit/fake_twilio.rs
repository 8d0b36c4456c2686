//! A local fake of Twilio's Messages API: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, basic auth. A send gets 201 and Twilio's message JSON with a fresh `SM...` sid;
//! a request without basic auth gets Twilio's 401 (code 20003). Sends can be scripted to fail
//! with Twilio's error JSON and a `Retry-After`. Every request is recorded exactly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::json;
use tokio_util::sync::DropGuard;

use super::recorded::{Recorded, ScriptedFailure};
use super::serve::serve_local;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    pub account_sid: String,
    /// The basic-auth user and password, decoded.
    pub basic_auth: Option<(String, String)>,
    /// The form parameters in the order sent.
    pub params: Vec<(String, String)>,
    /// The sid the fake answered with (`None` when it refused).
    pub sid: Option<String>,
}

impl TwilioRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct FakeTwilio {
    addr: SocketAddr,
    log: Arc<Recorded<TwilioRequest>>,
    _stop: Arc<DropGuard>,
}

impl FakeTwilio {
    pub async fn start() -> std::io::Result<FakeTwilio> {
        let log = Arc::new(Recorded::default());
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(create))
            .with_state(log.clone());
        let (addr, stop) = serve_local(app).await?;
        Ok(FakeTwilio {
            addr,
            log,
            _stop: Arc::new(stop),
        })
    }

    /// The value for `TWILIO_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<TwilioRequest> {
        self.log.all()
    }

    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<TwilioRequest> {
        self.log.wait_for(n, timeout, "FakeTwilio sends").await
    }

    /// Answers the next `count` sends with `status` and Twilio's error JSON for `code`.
    pub fn fail_next(&self, count: usize, status: u16, code: i64, retry_after: Option<u64>) {
        let body = json!({
            "code": code,
            "message": format!("Fake Twilio error {code}"),
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })
        .to_string();
        self.log.fail_next(
            count,
            ScriptedFailure {
                status,
                body,
                retry_after,
            },
        );
    }
}

async fn create(
    State(log): State<Arc<Recorded<TwilioRequest>>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let basic_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
        });
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let mut request = TwilioRequest {
        account_sid: account_sid.clone(),
        basic_auth,
        params,
        sid: None,
    };
    let mut retry_after = None;
    let (status, answer) = if request
        .basic_auth
        .as_ref()
        .is_none_or(|(user, _)| *user != account_sid)
    {
        (
            401,
            json!({"code": 20003, "message": "Authenticate", "status": 401}).to_string(),
        )
    } else if let Some(failure) = log.next_failure() {
        retry_after = failure.retry_after;
        (failure.status, failure.body)
    } else {
        let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
        request.sid = Some(sid.clone());
        let answer = json!({
            "sid": sid,
            "account_sid": account_sid,
            "to": request.param("To"),
            "from": request.param("From"),
            "body": request.param("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
        });
        (201, answer.to_string())
    };
    log.push(request);
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}
