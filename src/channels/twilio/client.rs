//! The Messages API client: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded,
//! with the account SID and auth token as basic auth. One client serves every tenant.
//!
//! A call does not retry; the sender does, with the crate's retry policy. 429 and 5xx (and
//! network failures) are retryable, honouring `Retry-After`; any other refusal is permanent and
//! keeps Twilio's error code (63016: outside the WhatsApp window, like Meta's 131047). Spans and
//! errors carry the account SID and Twilio's answer, never the recipient, the text or the token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::channels::http_api::{http_client, retry_after};
use crate::domain::ProviderMessageId;

/// How long one Messages API call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A refused or failed send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Twilio refused the message (HTTP {http_status:?}, code {code:?}): {detail}")]
pub struct TwilioSendError {
    /// Twilio's error code (`code` in the error JSON).
    pub code: Option<i64>,
    pub http_status: Option<u16>,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// Twilio's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// Twilio's message (at most 200 characters) or what failed locally.
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    api_base: String,
}

impl TwilioClient {
    pub fn new(api_base: impl Into<String>) -> Self {
        Self {
            http: http_client(TIMEOUT),
            api_base: api_base.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Sends `body` from `from` to `to` (both as Twilio writes them, `whatsapp:+...` for
    /// WhatsApp) and returns the message SID. `status_callback` is where Twilio reports delivery.
    #[tracing::instrument(name = "twilio.send", skip_all, fields(account = %account_sid, sid))]
    pub async fn send(
        &self,
        account_sid: &str,
        auth_token: &SecretString,
        from: &str,
        to: &str,
        body: &str,
        status_callback: Option<&str>,
    ) -> Result<ProviderMessageId, TwilioSendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            self.api_base
        );
        let mut form = vec![("To", to), ("From", from), ("Body", body)];
        if let Some(callback) = status_callback {
            form.push(("StatusCallback", callback));
        }
        let response = self
            .http
            .post(url)
            .basic_auth(account_sid, Some(auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|e| network(&e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| network(&e))?;
        if (200..300).contains(&status) {
            #[derive(Deserialize)]
            struct Created {
                sid: String,
            }
            let sid = serde_json::from_slice::<Created>(&bytes)
                .ok()
                .and_then(|c| ProviderMessageId::parse(&c.sid).ok())
                .ok_or_else(|| TwilioSendError {
                    code: None,
                    http_status: Some(status),
                    retryable: false,
                    retry_after: None,
                    detail: "Twilio accepted the message but answered no sid".to_owned(),
                })?;
            tracing::Span::current().record("sid", tracing::field::display(&sid));
            return Ok(sid);
        }
        #[derive(Deserialize)]
        struct Refusal {
            code: Option<i64>,
            message: Option<String>,
        }
        let refusal = serde_json::from_slice::<Refusal>(&bytes).ok();
        let retryable = status == 429 || status >= 500;
        Err(TwilioSendError {
            code: refusal.as_ref().and_then(|r| r.code),
            http_status: Some(status),
            retryable,
            retry_after,
            detail: refusal
                .and_then(|r| r.message)
                .map(|m| m.chars().take(200).collect())
                .unwrap_or_else(|| format!("HTTP {status}")),
        })
    }
}

fn network(err: &reqwest::Error) -> TwilioSendError {
    TwilioSendError {
        code: None,
        http_status: None,
        retryable: true,
        retry_after: None,
        detail: if err.is_timeout() {
            "the Twilio call timed out".to_owned()
        } else {
            "the Twilio API could not be reached".to_owned()
        },
    }
}
