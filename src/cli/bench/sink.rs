//! The reply sink for end-to-end runs: a stand-in for Meta's Graph API that the server under test
//! sends its replies to (`WHATSAPP_API_BASE=http://<sink>/v21.0`). It answers every send the way
//! Meta does and hands each reply to the [`ReplyTracker`]; mark-read and typing requests, which go
//! to the same path, are answered and counted apart.
//!
//! It does as little as it can per request: the server and the bench share the machine.

use super::tracker::ReplyTracker;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The parts of a send request the sink looks at.
#[derive(Debug, Deserialize)]
struct SendRequest {
    to: Option<String>,
    /// Present (`"read"`) on mark-read and typing-indicator requests.
    status: Option<String>,
    context: Option<Context>,
}

#[derive(Debug, Deserialize)]
struct Context {
    message_id: Option<String>,
}

struct Sink {
    tracker: Arc<ReplyTracker>,
    next_id: AtomicU64,
}

/// A running sink; dropping it stops it.
#[derive(Debug)]
pub struct RunningSink {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RunningSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves the sink until the returned handle is dropped.
pub async fn start(addr: SocketAddr, tracker: Arc<ReplyTracker>) -> anyhow::Result<RunningSink> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("the reply sink could not listen on {addr}: {e}"))?;
    let addr = listener.local_addr()?;
    let app = router(tracker);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("reply sink stopped: {e}");
        }
    });
    Ok(RunningSink { addr, task })
}

fn router(tracker: Arc<ReplyTracker>) -> Router {
    let sink = Arc::new(Sink {
        tracker,
        next_id: AtomicU64::new(0),
    });
    Router::new().route("/{*path}", post(send)).with_state(sink)
}

/// `POST {base}/{phone_number_id}/messages`.
async fn send(State(sink): State<Arc<Sink>>, Path(path): Path<String>, body: Bytes) -> Response {
    let arrived = Instant::now();
    if !path.ends_with("/messages") {
        return meta_error(StatusCode::NOT_FOUND, "Unknown path components");
    }
    let Ok(request) = serde_json::from_slice::<SendRequest>(&body) else {
        return meta_error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    if request.status.is_some() {
        sink.tracker.mark_read();
        return axum::Json(json!({ "success": true })).into_response();
    }
    let Some(to) = request.to else {
        return meta_error(StatusCode::BAD_REQUEST, "The parameter to is required.");
    };
    let context = request.context.and_then(|c| c.message_id);
    sink.tracker.reply(&to, context.as_deref(), arrived);
    let id = sink.next_id.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to }],
        "messages": [{ "id": format!("wamid.bench-sink-{id}") }],
    }))
    .into_response()
}

/// An error shaped like the Graph API's (`code` 100: invalid parameter).
fn meta_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "error": {
            "message": format!("(#100) {message}"),
            "type": "OAuthException",
            "code": 100,
            "fbtrace_id": "bench-sink",
        }
    });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::envelope::{wa_id, wamid};
    use serde_json::Value;

    async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
        let response = client.post(url).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    #[tokio::test]
    async fn sink_answers_like_meta_and_pairs_replies_but_not_mark_reads() {
        let tracker = Arc::new(ReplyTracker::new("r".into(), 4));
        tracker.sent(2, 2, Instant::now(), true);
        let sink = start("127.0.0.1:0".parse().unwrap(), tracker.clone())
            .await
            .unwrap();
        let url = format!("http://{}/v21.0/123456/messages", sink.addr);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();

        let (status, read) = post_json(
            &client,
            &url,
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid("r", 2),
                   "typing_indicator": {"type": "text"}}),
        )
        .await;
        assert_eq!((status, read), (200, json!({"success": true})));
        assert_eq!(tracker.outstanding(true), 1, "a mark-read is not a reply");

        let to = wa_id(2);
        let (status, answer) = post_json(
            &client,
            &url,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                   "type": "text", "text": {"body": "Our prices start at..."}}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer["messaging_product"], "whatsapp");
        assert_eq!(answer["contacts"][0]["input"], to.as_str());
        assert_eq!(answer["contacts"][0]["wa_id"], to.as_str());
        assert!(
            answer["messages"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("wamid.")
        );

        let results = tracker.results();
        assert_eq!((results.replies, results.mark_reads), (1, 1));
        assert_eq!(tracker.outstanding(false), 0);

        let (status, error) = post_json(&client, &url, json!({"type": "text"})).await;
        assert_eq!(status, 400);
        assert_eq!(error["error"]["code"], 100);
        let elsewhere = format!("http://{}/v21.0/123456/media", sink.addr);
        assert_eq!(post_json(&client, &elsewhere, json!({})).await.0, 404);
    }
}
