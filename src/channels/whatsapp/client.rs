//! The Graph API client: sends texts, reply buttons and templates, and marks messages read, for
//! any tenant's credentials. One `WhatsAppClient` (one connection pool) serves every tenant.
//!
//! Each call is one HTTP request with a timeout; it does not retry. The outbound worker decides
//! with the crate's retry helper, using `SendError::is_retryable` and `retry_after`. Spans carry
//! the phone number id (the business's, an id) and the answered `wamid`, never the recipient,
//! the text or the token.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::errors::SendError;
use super::outgoing::{self, ReplyButton};
use crate::domain::ProviderMessageId;

/// The Graph API version Parley speaks (`WHATSAPP_API_BASE` overrides it).
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com/v21.0";
/// How long one Graph API call may take, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a tenant sends with: its business phone number's id and a system-user access token.
#[derive(Debug, Clone)]
pub struct WhatsAppCredentials {
    pub phone_number_id: String,
    pub access_token: SecretString,
}

/// A client for `{api_base}/{phone_number_id}/messages`.
#[derive(Debug, Clone)]
pub struct WhatsAppClient {
    http: reqwest::Client,
    api_base: String,
}

impl WhatsAppClient {
    /// A client for `api_base` (for example [`DEFAULT_API_BASE`], or a test fake's base URL) with
    /// the default timeout.
    ///
    /// # Panics
    ///
    /// Like `reqwest::Client::new`, if the TLS backend cannot be initialised; use
    /// [`with_http_client`](Self::with_http_client) to handle that as an error.
    pub fn new(api_base: impl Into<String>) -> Self {
        Self::with_timeout(api_base, DEFAULT_TIMEOUT)
    }

    /// As [`new`](Self::new), with another timeout for each call.
    pub fn with_timeout(api_base: impl Into<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's TLS backend initialises");
        Self::with_http_client(http, api_base)
    }

    /// A client on a `reqwest::Client` built by the caller (who then owns its timeouts).
    pub fn with_http_client(http: reqwest::Client, api_base: impl Into<String>) -> Self {
        let api_base = api_base.into().trim_end_matches('/').to_owned();
        Self { http, api_base }
    }

    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Sends a text of at most 4096 characters (longer ones are refused: split them with
    /// [`split_message`](super::split_message)), optionally as a reply to `reply_to`.
    #[tracing::instrument(name = "whatsapp.send_text", skip_all, fields(phone_number_id = %creds.phone_number_id, wamid))]
    pub async fn send_text(
        &self,
        creds: &WhatsAppCredentials,
        to: &str,
        body: &str,
        reply_to: Option<&ProviderMessageId>,
    ) -> Result<ProviderMessageId, SendError> {
        let message = outgoing::text(to, body, reply_to)?;
        self.send(creds, &message).await
    }

    /// Sends an approved template: the only kind of message allowed outside the 24-hour window.
    /// `components` is Meta's `template.components` array (`Value::Null` for none).
    #[tracing::instrument(name = "whatsapp.send_template", skip_all, fields(phone_number_id = %creds.phone_number_id, template = name, wamid))]
    pub async fn send_template(
        &self,
        creds: &WhatsAppCredentials,
        to: &str,
        name: &str,
        language: &str,
        components: Value,
    ) -> Result<ProviderMessageId, SendError> {
        let message = outgoing::template(to, name, language, components);
        self.send(creds, &message).await
    }

    /// Sends `body` with one to three reply buttons (titles of at most 20 characters).
    #[tracing::instrument(name = "whatsapp.send_buttons", skip_all, fields(phone_number_id = %creds.phone_number_id, wamid))]
    pub async fn send_buttons(
        &self,
        creds: &WhatsAppCredentials,
        to: &str,
        body: &str,
        buttons: &[ReplyButton],
        reply_to: Option<&ProviderMessageId>,
    ) -> Result<ProviderMessageId, SendError> {
        let message = outgoing::buttons(to, body, buttons, reply_to)?;
        self.send(creds, &message).await
    }

    /// Marks `message_id` (an inbound message) read, and with `typing` shows the typing indicator
    /// until the reply is sent or 25 seconds pass.
    #[tracing::instrument(name = "whatsapp.mark_read", skip_all, fields(phone_number_id = %creds.phone_number_id, wamid = %message_id))]
    pub async fn mark_read(
        &self,
        creds: &WhatsAppCredentials,
        message_id: &ProviderMessageId,
        typing: bool,
    ) -> Result<(), SendError> {
        let (status, body) = self
            .post(creds, &outgoing::mark_read(message_id, typing))
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            success: bool,
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(Answer { success: true }) => Ok(()),
            _ => Err(SendError::unexpected_success(
                status,
                "the Graph API did not answer {\"success\": true} to mark-read",
            )),
        }
    }

    async fn send(
        &self,
        creds: &WhatsAppCredentials,
        message: &Value,
    ) -> Result<ProviderMessageId, SendError> {
        let (status, body) = self.post(creds, message).await?;
        #[derive(Deserialize)]
        struct Answer {
            messages: Vec<Sent>,
        }
        #[derive(Deserialize)]
        struct Sent {
            id: String,
        }
        let id = serde_json::from_slice::<Answer>(&body)
            .ok()
            .and_then(|a| a.messages.into_iter().next())
            .and_then(|m| ProviderMessageId::parse(&m.id).ok())
            .ok_or_else(|| {
                SendError::unexpected_success(
                    status,
                    "the Graph API accepted the message but answered no message id",
                )
            })?;
        tracing::Span::current().record("wamid", tracing::field::display(&id));
        Ok(id)
    }

    /// Posts `body` and returns a 2xx answer's status and body, or the classified error.
    async fn post(
        &self,
        creds: &WhatsAppCredentials,
        body: &Value,
    ) -> Result<(u16, bytes::Bytes), SendError> {
        let url = format!("{}/{}/messages", self.api_base, creds.phone_number_id);
        let response = self
            .http
            .post(url)
            // Marks the header sensitive, so it is redacted from reqwest's and hyper's Debug.
            .bearer_auth(creds.access_token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(|e| SendError::network(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(|e| SendError::network(&e))?;
        if (200..300).contains(&status) {
            Ok((status, bytes))
        } else {
            Err(SendError::from_response(status, &bytes, retry_after))
        }
    }
}
