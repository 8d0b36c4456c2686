//! The WAHA send client: `POST {WAHA_URL}/api/sendText` with `X-Api-Key` and
//! `{"session","chatId","text"}`. 429 and 5xx (and network failures) are retryable, other
//! refusals permanent. Errors never carry the chat id, the text or the key.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::channels::http_api::{http_client, retry_after};
use crate::domain::ProviderMessageId;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WAHA refused the message (HTTP {http_status:?}): {detail}")]
pub struct WahaSendError {
    pub http_status: Option<u16>,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct WahaClient {
    http: reqwest::Client,
}

impl Default for WahaClient {
    fn default() -> Self {
        Self::new()
    }
}

impl WahaClient {
    pub fn new() -> Self {
        Self {
            http: http_client(TIMEOUT),
        }
    }

    /// Sends `text` to `chat_id` in `session`; returns WAHA's message id when it answered one.
    #[tracing::instrument(name = "waha.send_text", skip_all, fields(session = %session))]
    pub async fn send_text(
        &self,
        base_url: &str,
        api_key: Option<&SecretString>,
        session: &str,
        chat_id: &str,
        text: &str,
    ) -> Result<Option<ProviderMessageId>, WahaSendError> {
        let mut request = self
            .http
            .post(format!("{}/api/sendText", base_url.trim_end_matches('/')))
            .json(&json!({ "session": session, "chatId": chat_id, "text": text }));
        if let Some(key) = api_key {
            let mut value =
                reqwest::header::HeaderValue::from_str(key.expose_secret()).map_err(|_| {
                    WahaSendError {
                        http_status: None,
                        retryable: false,
                        retry_after: None,
                        detail: "WAHA_API_KEY is not a valid header value".to_owned(),
                    }
                })?;
            value.set_sensitive(true);
            request = request.header("X-Api-Key", value);
        }
        let response = request.send().await.map_err(|e| WahaSendError {
            http_status: None,
            retryable: true,
            retry_after: None,
            detail: if e.is_timeout() {
                "the WAHA call timed out".to_owned()
            } else {
                "WAHA could not be reached".to_owned()
            },
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            // WEBJS answers `id` as an object with `_serialized`; other engines as a string.
            let id = body
                .get("id")
                .and_then(|id| id.as_str().or_else(|| id.get("_serialized")?.as_str()))
                .and_then(|id| ProviderMessageId::parse(id).ok());
            return Ok(id);
        }
        let detail = body
            .get("message")
            .and_then(Value::as_str)
            .map(|m| m.chars().take(200).collect())
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(WahaSendError {
            http_status: Some(status),
            retryable: status == 429 || status >= 500,
            retry_after,
            detail,
        })
    }
}
