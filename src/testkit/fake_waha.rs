//! A local fake of WAHA's send API: `POST /api/sendText` with `X-Api-Key` and
//! `{"session","chatId","text"}`. A send gets 201 and a message object whose `id` is WEBJS's
//! `{"_serialized": "true_<chatId>_<hex>", ...}`; a wrong or missing key gets 401. Sends can be
//! scripted to fail. Every request is recorded exactly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio_util::sync::DropGuard;

use super::recorded::{Recorded, ScriptedFailure};
use super::serve::serve_local;

#[derive(Debug, Clone)]
pub struct WahaRequest {
    pub api_key: Option<String>,
    pub body: Value,
    /// The id the fake answered with (`None` when it refused).
    pub id: Option<String>,
}

#[derive(Debug)]
struct Shared {
    log: Recorded<WahaRequest>,
    api_key: String,
}

#[derive(Debug, Clone)]
pub struct FakeWaha {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: Arc<DropGuard>,
}

impl FakeWaha {
    /// A fake that accepts requests carrying `api_key` in `X-Api-Key`.
    pub async fn start(api_key: &str) -> std::io::Result<FakeWaha> {
        let shared = Arc::new(Shared {
            log: Recorded::default(),
            api_key: api_key.to_owned(),
        });
        let app = Router::new()
            .route("/api/sendText", post(send_text))
            .with_state(shared.clone());
        let (addr, stop) = serve_local(app).await?;
        Ok(FakeWaha {
            addr,
            shared,
            _stop: Arc::new(stop),
        })
    }

    /// The value for `WAHA_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<WahaRequest> {
        self.shared.log.all()
    }

    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<WahaRequest> {
        self.shared.log.wait_for(n, timeout, "FakeWaha sends").await
    }

    /// Answers the next `count` sends with `status` and a WAHA-style error body.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.shared.log.fail_next(
            count,
            ScriptedFailure {
                status,
                body: json!({"statusCode": status, "message": "fake WAHA failure"}).to_string(),
                retry_after: None,
            },
        );
    }
}

async fn send_text(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut request = WahaRequest {
        api_key: api_key.clone(),
        body: json.clone(),
        id: None,
    };
    let (status, answer) = if api_key.as_deref() != Some(shared.api_key.as_str()) {
        (401, json!({"statusCode": 401, "message": "Unauthorized"}))
    } else if let Some(failure) = shared.log.next_failure() {
        (
            failure.status,
            serde_json::from_str(&failure.body).unwrap_or(Value::Null),
        )
    } else {
        let chat = json["chatId"].as_str().unwrap_or_default();
        let serialized = format!("true_{chat}_{}", uuid::Uuid::new_v4().simple());
        request.id = Some(serialized.clone());
        (
            201,
            json!({
                "id": {"fromMe": true, "remote": chat, "id": serialized.rsplit('_').next(), "_serialized": serialized},
                "body": json["text"],
                "fromMe": true,
                "to": chat,
            }),
        )
    };
    shared.log.push(request);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}
