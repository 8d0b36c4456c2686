//! A local imitation of the OpenAI Chat Completions endpoint (`POST {base}/chat/completions`) and
//! of the embeddings endpoint (`POST {base}/embeddings`, deterministic word-hash vectors)
//! for tests: it records every request (path, the headers that matter, JSON body) and answers
//! from a script, so a test can assert on exactly what Parley sent and on how it copes with
//! valid answers, malformed answers, rate limits and slowness.
//!
//! ```no_run
//! # async fn demo() {
//! use parley::testkit::fake_openai::{FakeOpenAi, ScriptedReply};
//! let fake = FakeOpenAi::start().await;
//! fake.push_reply(ScriptedReply::content(r#"{"intent":"pricing","confidence":0.9,"entities":{}}"#));
//! // point the client at fake.base_url(), send, then inspect fake.requests()
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    /// A valid chat completion whose assistant message content is this text.
    Content(String),
    /// HTTP 429 with `Retry-After` and OpenAI's error body (`code: rate_limit_exceeded`).
    RateLimited { retry_after_secs: u64 },
    /// Any status with any JSON body.
    Status { status: u16, body: Value },
    /// Wait, then answer with the inner reply (a client timeout shorter than the delay never
    /// sees it).
    Delayed {
        delay: Duration,
        then: Box<ScriptedReply>,
    },
}

impl ScriptedReply {
    /// A valid completion with this content.
    pub fn content(text: impl Into<String>) -> Self {
        ScriptedReply::Content(text.into())
    }

    /// A valid completion whose content is this JSON value, serialised.
    pub fn json(value: Value) -> Self {
        ScriptedReply::Content(value.to_string())
    }

    /// `then`, after `delay`.
    pub fn delayed(delay: Duration, then: ScriptedReply) -> Self {
        ScriptedReply::Delayed {
            delay,
            then: Box::new(then),
        }
    }
}

/// What the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
}

/// Computes a reply from the request's JSON body (for answers that depend on the question).
pub type Responder = Arc<dyn Fn(&Value) -> ScriptedReply + Send + Sync>;

#[derive(Default)]
struct Script {
    /// Replies for requests whose `response_format.json_schema.name` is the key (used before
    /// the queue, and every time).
    by_schema: std::collections::HashMap<String, ScriptedReply>,
    /// Like `by_schema`, computed from the request; consulted first.
    responders: std::collections::HashMap<String, Responder>,
    replies: VecDeque<ScriptedReply>,
    default_reply: Option<ScriptedReply>,
    requests: Vec<RecordedRequest>,
}

type Shared = Arc<Mutex<Script>>;

/// The running fake; it stops when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    script: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeOpenAi {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake OpenAI server binds a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let script: Shared = Arc::default();
        let app = Router::new().fallback(answer).with_state(script.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            script,
            shutdown: Some(tx),
        }
    }

    /// The API root to configure clients with, e.g. `http://127.0.0.1:41234/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Queues a reply; replies are used once each, in order.
    pub fn push_reply(&self, reply: ScriptedReply) {
        self.lock().replies.push_back(reply);
    }

    /// Answers every request whose JSON schema is named `schema` with `reply` (for example
    /// `lead_facts` for lead extraction, while intent requests take the queue).
    pub fn set_reply_for_schema(&self, schema: &str, reply: ScriptedReply) {
        self.lock().by_schema.insert(schema.to_owned(), reply);
    }

    /// Answers every request whose JSON schema is named `schema` with what `responder` computes
    /// from the request body (taking precedence over `set_reply_for_schema`).
    pub fn set_responder_for_schema(
        &self,
        schema: &str,
        responder: impl Fn(&Value) -> ScriptedReply + Send + Sync + 'static,
    ) {
        self.lock()
            .responders
            .insert(schema.to_owned(), Arc::new(responder));
    }

    /// The reply used when the queue is empty. Until set, it is a valid completion answering
    /// `{"intent":"out_of_scope","confidence":0.5,"entities":{}}`.
    pub fn set_default_reply(&self, reply: ScriptedReply) {
        self.lock().default_reply = Some(reply);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn answer(
    State(script): State<Shared>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    let is_chat = method == axum::http::Method::POST && uri.path().ends_with("/chat/completions");
    let schema = body["response_format"]["json_schema"]["name"]
        .as_str()
        .map(str::to_owned);
    let is_embeddings = method == axum::http::Method::POST && uri.path().ends_with("/embeddings");
    let reply = {
        let mut script = script.lock().unwrap_or_else(|p| p.into_inner());
        script.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body,
        });
        let responder = schema
            .as_ref()
            .and_then(|s| script.responders.get(s).cloned());
        if !is_chat {
            None
        } else if let Some(responder) = responder {
            let body = script.requests.last().map(|r| r.body.clone());
            Some(responder(&body.unwrap_or(Value::Null)))
        } else if let Some(reply) = schema.and_then(|s| script.by_schema.get(&s).cloned()) {
            Some(reply)
        } else {
            script
                .replies
                .pop_front()
                .or_else(|| script.default_reply.clone())
        }
    };
    if is_embeddings {
        return embeddings(&script, &model).into_response();
    }
    if !is_chat {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            "Unknown request URL",
        )
        .into_response();
    }
    let reply = reply.unwrap_or_else(|| {
        ScriptedReply::json(json!({"intent": "out_of_scope", "confidence": 0.5, "entities": {}}))
    });
    render(reply, &model).await
}

fn render(
    reply: ScriptedReply,
    model: &str,
) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send + '_>> {
    Box::pin(async move {
        match reply {
            ScriptedReply::Content(content) => {
                axum::Json(completion(&content, model)).into_response()
            }
            ScriptedReply::RateLimited { retry_after_secs } => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "requests",
                    "rate_limit_exceeded",
                    "Rate limit reached for requests",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(retry_after_secs));
                response
            }
            ScriptedReply::Status { status, body } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, axum::Json(body)).into_response()
            }
            ScriptedReply::Delayed { delay, then } => {
                tokio::time::sleep(delay).await;
                render(*then, model).await
            }
        }
    })
}

/// OpenAI's error shape.
fn error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
) -> (StatusCode, axum::Json<Value>) {
    (
        status,
        axum::Json(json!({
            "error": { "message": message, "type": kind, "param": null, "code": code }
        })),
    )
}

/// A chat completion with one choice.
fn completion(content: &str, model: &str) -> Value {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20 }
    })
}

/// The length of the fake's embedding vectors.
pub const FAKE_EMBEDDING_DIMENSIONS: usize = 64;

/// The fake's embedding of `text`: its lowercase words hashed into
/// [`FAKE_EMBEDDING_DIMENSIONS`] buckets, normalised, so texts sharing words are close.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    use sha2::{Digest, Sha256};
    let mut vector = vec![0f32; FAKE_EMBEDDING_DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let digest = Sha256::digest(word.to_lowercase().as_bytes());
        vector[digest[0] as usize % FAKE_EMBEDDING_DIMENSIONS] += 1.0;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    } else {
        vector[0] = 1.0;
    }
    vector
}

/// `POST /embeddings`, as OpenAI answers it: one vector per input, in input order.
fn embeddings(script: &Shared, model: &str) -> axum::Json<Value> {
    let body = script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .last()
        .map(|r| r.body.clone())
        .unwrap_or(Value::Null);
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(text)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}
