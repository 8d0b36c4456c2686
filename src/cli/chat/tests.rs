//! The chat client against a stand-in Parley web channel: an axum server that records messages,
//! answers each with `echo: <text>` a moment later, and streams them as server-sent events.

use super::*;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode as AxumStatus;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    chat: ChatArgs,
}

fn parse(args: &[&str]) -> Result<ChatArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("chat").chain(args.iter().copied())).map(|c| c.chat)
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

struct Stub {
    messages: Mutex<Vec<Value>>,
    updates: broadcast::Sender<Value>,
    event_failures_left: AtomicU32,
    replies: AtomicBool,
    visitor_ids: Mutex<Vec<String>>,
}

fn message(author: &str, text: &str) -> Value {
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "direction": if author == "prospect" { "inbound" } else { "outbound" },
        "author": author,
        "text": text,
        "status": "sent",
        "created_at": "2025-01-01T00:00:00Z",
    })
}

impl Stub {
    fn publish(&self, message: Value) {
        self.messages.lock().unwrap().push(message.clone());
        let _ = self.updates.send(message);
    }
}

async fn post_message(State(stub): State<Arc<Stub>>, Json(body): Json<Value>) -> Response {
    let tenant = TenantId::parse(body["tenant"].as_str().unwrap()).unwrap();
    let visitor = body["visitor_id"].as_str().unwrap().to_owned();
    let text = body["text"].as_str().unwrap().to_owned();
    stub.visitor_ids.lock().unwrap().push(visitor.clone());
    let inbound = message("prospect", &text);
    let message_id = inbound["id"].clone();
    stub.publish(inbound);
    if stub.replies.load(Ordering::SeqCst) {
        let stub = stub.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            stub.publish(message("bot", &format!("echo: {text}")));
        });
    }
    let conversation = ConversationId::derive(&tenant, Channel::Web, &visitor);
    (
        AxumStatus::ACCEPTED,
        Json(json!({"conversation_id": conversation.to_string(), "message_id": message_id})),
    )
        .into_response()
}

fn error(status: AxumStatus, code: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "message": "as the stub says", "request_id": "r-1"})),
    )
        .into_response()
}

async fn list(State(stub): State<Arc<Stub>>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert!(q.contains_key("visitor_id"));
    let messages = stub.messages.lock().unwrap().clone();
    if messages.is_empty() {
        return error(AxumStatus::NOT_FOUND, "not_found");
    }
    Json(json!({ "messages": messages })).into_response()
}

async fn events(State(stub): State<Arc<Stub>>) -> Response {
    let failures = stub.event_failures_left.load(Ordering::SeqCst);
    if failures > 0 {
        stub.event_failures_left
            .store(failures - 1, Ordering::SeqCst);
        return error(AxumStatus::SERVICE_UNAVAILABLE, "unavailable");
    }
    let stream = BroadcastStream::new(stub.updates.subscribe()).filter_map(|m| async move {
        m.ok().map(|m| {
            Ok::<_, std::convert::Infallible>(Event::default().event("message").data(m.to_string()))
        })
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(200)))
        .into_response()
}

async fn start_stub(event_failures: u32, replies: bool) -> (String, Arc<Stub>) {
    let stub = Arc::new(Stub {
        messages: Mutex::default(),
        updates: broadcast::channel(64).0,
        event_failures_left: AtomicU32::new(event_failures),
        replies: AtomicBool::new(replies),
        visitor_ids: Mutex::default(),
    });
    let app = Router::new()
        .route("/api/v1/web/messages", post(post_message))
        .route("/api/v1/conversations/{id}/messages", get(list))
        .route("/api/v1/conversations/{id}/events", get(events))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), stub)
}

/// Runs a piped chat session as `visitor` over `lines`, returning its result and output.
async fn chat(
    url: &str,
    visitor: &str,
    lines: &[&str],
    timeout: &str,
) -> (anyhow::Result<()>, String) {
    let args = parse(&[
        "--url",
        url,
        "--visitor-id",
        visitor,
        "--reply-timeout",
        timeout,
    ])
    .unwrap();
    let api = Api::new(&args, visitor.to_owned()).unwrap();
    let out = Shared::default();
    let session = Session::new(api, Box::new(out.clone()), false, args.reply_timeout);
    let (tx, rx) = mpsc::channel(16);
    for line in lines {
        tx.send(Ok((*line).to_owned())).await.unwrap();
    }
    drop(tx);
    let result = session.run(rx).await;
    (result, out.text())
}

#[tokio::test]
async fn piped_chat_sends_each_line_and_prints_its_reply_once() {
    let (url, stub) = start_stub(0, true).await;
    let (result, out) = chat(
        &url,
        "visitor-1",
        &["hi", "  ", "what are your prices?"],
        "10s",
    )
    .await;
    result.unwrap();
    assert_eq!(
        out,
        "you> hi\nbot> echo: hi\nyou> what are your prices?\nbot> echo: what are your prices?\n"
    );
    assert_eq!(
        *stub.visitor_ids.lock().unwrap(),
        ["visitor-1", "visitor-1"]
    );
}

#[tokio::test]
async fn a_restarted_chat_shows_the_conversation_so_far() {
    let (url, _stub) = start_stub(0, true).await;
    chat(&url, "visitor-2", &["hello"], "10s").await.0.unwrap();
    let (result, out) = chat(&url, "visitor-2", &[], "10s").await;
    result.unwrap();
    assert_eq!(
        out,
        "--- earlier in this conversation ---\nyou> hello\nbot> echo: hello\n---\n"
    );
}

#[tokio::test]
async fn replies_arrive_after_the_event_stream_fails_and_is_reopened() {
    let (url, stub) = start_stub(2, true).await;
    let (result, out) = chat(&url, "visitor-3", &["anyone there?"], "10s").await;
    result.unwrap();
    assert_eq!(out, "you> anyone there?\nbot> echo: anyone there?\n");
    assert_eq!(stub.event_failures_left.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_reply_fails_a_piped_chat_after_the_timeout() {
    let (url, _stub) = start_stub(0, false).await;
    let (result, out) = chat(&url, "visitor-4", &["hello?"], "300ms").await;
    assert_eq!(out, "you> hello?\n");
    let error = result.unwrap_err().to_string();
    assert!(
        error.starts_with("1 of 1 messages got no reply within"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_running_gets_a_one_line_explanation() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (result, _) = chat(&url, "visitor-5", &["hi"], "1s").await;
    assert_eq!(
        result.unwrap_err().to_string(),
        format!("could not reach Parley at {url}: is `parley serve` running?")
    );
}

#[test]
fn arguments_have_sensible_defaults_and_hide_the_token() {
    let args = parse(&["--token", "admin-token-xyz"]).unwrap();
    assert_eq!(args.tenant.as_str(), "default");
    assert_eq!(args.visitor_id, None);
    assert_eq!(args.reply_timeout, Duration::from_secs(30));
    assert!(!format!("{args:?}").contains("admin-token-xyz"));
    assert!(parse(&["--tenant", "no spaces"]).is_err());
    assert!(parse(&["--new", "--visitor-id", "v"]).is_err());
}

#[test]
fn the_visitor_id_file_follows_parley_data_dir_then_the_user_data_dir() {
    let home = Some(PathBuf::from("/home/ada"));
    assert_eq!(
        visitor_id_file(
            Some("/srv/parley".into()),
            Some("/xdg".into()),
            home.clone()
        ),
        Some(PathBuf::from("/srv/parley/chat-visitor-id"))
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            visitor_id_file(None, Some("/xdg".into()), home.clone()),
            Some(PathBuf::from("/xdg/parley/chat-visitor-id"))
        );
        assert_eq!(
            visitor_id_file(Some("".into()), Some("relative".into()), home.clone()),
            Some(PathBuf::from(
                "/home/ada/.local/share/parley/chat-visitor-id"
            ))
        );
    }
    assert_eq!(visitor_id_file(None, None, None), None);
}

#[test]
fn the_visitor_id_is_kept_between_runs_until_a_new_one_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/chat-visitor-id");
    let first = load_or_create_visitor_id(&path, false).unwrap();
    assert!(first.starts_with("cli-"));
    assert_eq!(load_or_create_visitor_id(&path, false).unwrap(), first);
    let fresh = load_or_create_visitor_id(&path, true).unwrap();
    assert_ne!(fresh, first);
    assert_eq!(load_or_create_visitor_id(&path, false).unwrap(), fresh);
    std::fs::write(&path, "  \n").unwrap();
    assert_ne!(load_or_create_visitor_id(&path, false).unwrap(), "");
}

#[test]
fn the_transcript_shows_each_reply_once_and_waits_for_text() {
    let out = Shared::default();
    let mut t = Transcript::new(Box::new(out.clone()), false);
    let mut reply = WireMessage {
        id: "m1".into(),
        direction: "outbound".into(),
        author: "staff".into(),
        text: None,
        status: Some("pending".into()),
        created_at: None,
    };
    t.live(reply.clone());
    reply.text = Some("Hi, Ada here.\nHow can I help?".into());
    t.live(reply.clone());
    t.live(reply);
    t.live(WireMessage {
        id: "m2".into(),
        direction: "inbound".into(),
        author: "prospect".into(),
        text: Some("my own words".into()),
        status: None,
        created_at: None,
    });
    assert_eq!(out.text(), "staff> Hi, Ada here.\n       How can I help?\n");
    assert_eq!(t.replies, 1);
}

#[test]
fn api_errors_read_as_one_sentence() {
    let e = ChatError::Api {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_input".into(),
        message: "text must not be empty".into(),
        request_id: Some("req-9".into()),
    };
    assert_eq!(
        e.to_string(),
        "Parley answered 400 Bad Request (invalid_input): text must not be empty [request id req-9]"
    );
}

#[test]
fn backoff_doubles_to_its_ceiling_with_jitter_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
    let delays: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
    let expected = [100, 200, 400, 400, 400];
    for (delay, base) in delays.iter().zip(expected) {
        let base = Duration::from_millis(base);
        assert!(
            *delay >= base.mul_f64(0.8) && *delay <= base.mul_f64(1.2),
            "{delay:?} vs {base:?}"
        );
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(120));
}
