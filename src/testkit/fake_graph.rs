//! A local fake of the WhatsApp Cloud API (Graph API) for tests and the load generator.
//!
//! It answers `POST /{version}/{phone_number_id}/messages` as Meta does: a send gets
//! `{"messaging_product":"whatsapp","contacts":[{"input":to,"wa_id":to}],"messages":[{"id":"wamid.<unique>"}]}`,
//! a mark-read (`"status":"read"`) gets `{"success":true}`, a request without a bearer token gets
//! Meta's 401 with code 190. Every request is recorded exactly, before any scripted delay, so a
//! test can assert on what was sent even when its client gave up waiting. Sends can be scripted
//! to fail with Meta's error JSON for a given code ([`FakeGraph::fail_next`]) or any body
//! ([`FakeGraph::fail_next_with_body`]).
//!
//! The server runs on `127.0.0.1:0` until the last clone of the `FakeGraph` is dropped (clones
//! share it, so a test can restart the app under test against the same fake).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The Graph API version the fake's base URL names (any version is answered).
pub const FAKE_API_VERSION: &str = "v21.0";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub phone_number_id: String,
    /// The `Authorization` header as sent (`Bearer <token>`).
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` when the body was not JSON).
    pub body: Value,
    /// The message id the fake answered with; `None` for mark-reads and for sends it refused
    /// (scripted failures, a missing token).
    pub wamid: Option<String>,
}

impl GraphRequest {
    /// Whether this is a mark-read (and typing indicator) rather than a send.
    pub fn is_mark_read(&self) -> bool {
        self.body.get("status").and_then(Value::as_str) == Some("read")
    }
}

/// A scripted answer to a coming send.
#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    body: String,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<GraphRequest>,
    failures: VecDeque<Failure>,
    delay: Duration,
    next_id: u64,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide what was recorded from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Graph API; stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FakeGraph {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: Arc<DropGuard>,
}

impl FakeGraph {
    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime.
    pub async fn start() -> std::io::Result<FakeGraph> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(messages))
            .with_state(shared.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake Graph API stopped");
            }
        });
        Ok(FakeGraph {
            addr,
            shared,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// The API base to configure a client with, e.g. `http://127.0.0.1:41234/v21.0`.
    pub fn base_url(&self) -> String {
        format!("http://{}/{FAKE_API_VERSION}", self.addr)
    }

    /// Everything received so far, in order.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.shared.lock().requests.clone()
    }

    /// Forgets everything received so far (a long-running test starting a new case).
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }

    /// Every send attempt received, in order, mark-reads left out. Attempts the fake refused
    /// (scripted failures) are included with `wamid: None`, so a retry shows as a second entry.
    pub fn sent_messages(&self) -> Vec<GraphRequest> {
        sends(&self.shared.lock().requests)
    }

    /// Waits until `n` send attempts (as counted by [`sent_messages`](Self::sent_messages)) have
    /// arrived and returns them all; panics with a clear message if they have not after
    /// `timeout`.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<GraphRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a send landing in between still wakes us.
            arrived.as_mut().enable();
            let sent = self.sent_messages();
            if sent.len() >= n {
                return sent;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let all = self.requests();
                panic!(
                    "FakeGraph: waited {timeout:?} for {n} sends, got {} ({} of them refused), \
                     and {} mark-reads",
                    sent.len(),
                    sent.iter().filter(|r| r.wamid.is_none()).count(),
                    all.iter().filter(|r| r.is_mark_read()).count(),
                );
            }
        }
    }

    /// Answers the next `count` sends with `http_status` and Meta's error JSON for `error_code`
    /// (`{"error":{"message","type","code","error_data":{"messaging_product","details"},
    /// "fbtrace_id"}}`). Mark-reads are not affected.
    pub fn fail_next(&self, count: usize, http_status: u16, error_code: i64) {
        let body = meta_error_body(error_code).to_string();
        self.fail_next_with_body(count, http_status, &body);
    }

    /// Answers the next `count` sends with `http_status` and exactly `body` (for example an HTML
    /// page from a proxy, or an empty body: a failure without a Meta error code).
    pub fn fail_next_with_body(&self, count: usize, http_status: u16, body: &str) {
        let failure = Failure {
            status: http_status,
            body: body.to_owned(),
        };
        self.shared
            .lock()
            .failures
            .extend(std::iter::repeat_n(failure, count));
    }

    /// Delays every answer by `d` (the request is recorded first), to exercise timeouts.
    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().delay = d;
    }
}

fn sends(requests: &[GraphRequest]) -> Vec<GraphRequest> {
    requests
        .iter()
        .filter(|r| !r.is_mark_read())
        .cloned()
        .collect()
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut request = GraphRequest {
        phone_number_id,
        authorization,
        body: json.clone().unwrap_or(Value::Null),
        wamid: None,
    };

    let (status, answer, delay) = {
        let mut inner = shared.lock();
        let has_bearer = request
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ") && a.len() > "Bearer ".len());
        let (status, answer) = match json {
            _ if !has_bearer => (401, meta_error_body(190).to_string()),
            None => (400, meta_error_body(100).to_string()),
            Some(_) if request.is_mark_read() => (200, json!({"success": true}).to_string()),
            Some(body) => match inner.failures.pop_front() {
                Some(failure) => (failure.status, failure.body),
                None => {
                    inner.next_id += 1;
                    let wamid = format!(
                        "wamid.FAKE{:06}{}",
                        inner.next_id,
                        uuid::Uuid::new_v4().simple()
                    );
                    request.wamid = Some(wamid.clone());
                    let to = body.get("to").cloned().unwrap_or(Value::Null);
                    let answer = json!({
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": to, "wa_id": to}],
                        "messages": [{"id": wamid}],
                    });
                    (200, answer.to_string())
                }
            },
        };
        inner.requests.push(request);
        (status, answer, inner.delay)
    };
    shared.arrived.notify_waiters();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// Meta's error JSON for `code`, with the message Meta uses for it.
pub fn meta_error_body(code: i64) -> Value {
    let (message, details) = match code {
        100 => ("(#100) Invalid parameter", "Invalid parameter"),
        190 => (
            "Error validating access token: Session has expired.",
            "The access token has expired",
        ),
        130429 => (
            "(#130429) Rate limit hit",
            "Cloud API message throughput has been reached.",
        ),
        131000 => ("(#131000) Something went wrong", "Something went wrong"),
        131026 => ("(#131026) Message undeliverable", "Message Undeliverable."),
        131047 => (
            "(#131047) Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
        131049 => (
            "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        ),
        131056 => (
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
        ),
        _ => ("(#0) Error", "Error"),
    };
    json!({
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AFakeGraphTrace000000"
        }
    })
}
