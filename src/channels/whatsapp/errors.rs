//! Why a send failed, classified for the caller's next move: retry later, send a template
//! instead, stop, or fix the credentials.
//!
//! Meta's error code decides, not the HTTP status (PROTOCOLS.md): the same 400 can mean "outside
//! the 24-hour window" (131047, send a template) or "undeliverable" (131026, give up). The HTTP
//! status only decides when the body carries no code. A `SendError`'s `Display` names the code,
//! the status and Meta's title; it never carries the access token, the recipient or the text.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// What the caller should do about a failed send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendErrorKind {
    /// A transient failure (throughput or pair rate limit, a Meta-side fault, a network error or a
    /// timeout): try again with backoff, no sooner than `retry_after` when Meta said so.
    Retryable { retry_after: Option<Duration> },
    /// 131047: more than 24 hours since the prospect's last message; only a template may be sent.
    OutsideWindow,
    /// 131049: Meta held back a marketing message for this user; do not retry soon.
    RateLimitedDoNotRetrySoon,
    /// 190 (or 0, AuthException): the access token expired or was revoked; retrying cannot help
    /// until someone renews it.
    AuthExpired,
    /// Anything else Meta refused (131026 undeliverable, 131051, 132xxx template problems, bad
    /// parameters...): retrying the same request cannot succeed.
    Permanent,
    /// Refused before sending: the request breaks a WhatsApp limit the caller must respect.
    InvalidRequest(InvalidRequest),
}

/// A request Parley refuses to send because WhatsApp would reject it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error(
        "a text message is {chars} characters, more than the {limit} WhatsApp accepts: split it"
    )]
    TextTooLong { chars: usize, limit: usize },
    #[error("a message body must not be empty")]
    EmptyBody,
    #[error("an interactive message needs 1 to {max} reply buttons, not {count}")]
    ButtonCount { count: usize, max: usize },
    #[error("reply button {index} has a title of {chars} characters; the limit is {limit}")]
    ButtonTitleTooLong {
        index: usize,
        chars: usize,
        limit: usize,
    },
    #[error("reply button {index} has an empty id or title")]
    ButtonEmpty { index: usize },
    #[error("reply button {index} has the same id or title as an earlier one")]
    ButtonDuplicate { index: usize },
    #[error("reply button {index} has an id of {chars} characters; the limit is {limit}")]
    ButtonIdTooLong {
        index: usize,
        chars: usize,
        limit: usize,
    },
}

/// A failed send: the classification and what Meta said, minus anything private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub kind: SendErrorKind,
    /// Meta's `error.code`, when the response carried one.
    pub code: Option<i64>,
    /// Meta's `error.error_subcode`.
    pub subcode: Option<i64>,
    /// The HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// Meta's `error.message` (or what went wrong locally), at most 200 characters.
    pub title: Option<String>,
    /// Meta's `error.fbtrace_id`, to quote to Meta support.
    pub fbtrace_id: Option<String>,
}

impl SendError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, SendErrorKind::Retryable { .. })
    }

    /// Meta's error code, if the response carried one.
    pub fn code(&self) -> Option<i64> {
        self.code
    }

    /// How long Meta asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            SendErrorKind::Retryable { retry_after } => retry_after,
            _ => None,
        }
    }

    pub(crate) fn invalid(reason: InvalidRequest) -> Self {
        Self {
            title: Some(reason.to_string()),
            kind: SendErrorKind::InvalidRequest(reason),
            code: None,
            subcode: None,
            http_status: None,
            fbtrace_id: None,
        }
    }

    /// A request that got no answer. reqwest's own message names the URL, which holds only the
    /// API base and the phone number id; we still keep only the category.
    pub(crate) fn network(e: &reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "the request to the Graph API timed out"
        } else if e.is_connect() {
            "could not connect to the Graph API"
        } else {
            "the request to the Graph API failed"
        };
        Self {
            kind: SendErrorKind::Retryable { retry_after: None },
            code: None,
            subcode: None,
            http_status: None,
            title: Some(what.to_owned()),
            fbtrace_id: None,
        }
    }

    /// A 2xx answer Parley cannot read. The message was probably accepted, so retrying could
    /// send it twice: permanent.
    pub(crate) fn unexpected_success(http_status: u16, what: &str) -> Self {
        Self {
            kind: SendErrorKind::Permanent,
            code: None,
            subcode: None,
            http_status: Some(http_status),
            title: Some(what.to_owned()),
            fbtrace_id: None,
        }
    }

    /// An error response: its body (Meta's error JSON, or anything else) and headers.
    pub(crate) fn from_response(
        http_status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        let error = serde_json::from_slice::<GraphErrorBody>(body)
            .ok()
            .map(|b| b.error);
        let code = error.as_ref().and_then(|e| e.code);
        Self {
            kind: classify(Some(http_status), code, retry_after),
            code,
            subcode: error.as_ref().and_then(|e| e.error_subcode),
            http_status: Some(http_status),
            title: error
                .as_ref()
                .and_then(|e| e.message.as_deref())
                .map(|m| m.chars().take(200).collect()),
            fbtrace_id: error.and_then(|e| e.fbtrace_id),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            SendErrorKind::Retryable { .. } => "temporary failure, retry later",
            SendErrorKind::OutsideWindow => {
                "outside the 24-hour customer service window, send a template"
            }
            SendErrorKind::RateLimitedDoNotRetrySoon => {
                "held back by Meta's per-user marketing limit, do not retry soon"
            }
            SendErrorKind::AuthExpired => "the access token is invalid or expired",
            SendErrorKind::Permanent => "refused",
            SendErrorKind::InvalidRequest(_) => "not sent, invalid request",
        };
        write!(f, "WhatsApp send failed: {what}")?;
        match (self.code, self.http_status) {
            (Some(code), Some(status)) => write!(f, " (code {code}, HTTP {status})")?,
            (Some(code), None) => write!(f, " (code {code})")?,
            (None, Some(status)) => write!(f, " (HTTP {status})")?,
            (None, None) => {}
        }
        if let Some(title) = &self.title {
            write!(f, ": {title}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SendError {}

/// The decision table. `code` wins over `http_status` whenever Meta gave one.
pub fn classify(
    http_status: Option<u16>,
    code: Option<i64>,
    retry_after: Option<Duration>,
) -> SendErrorKind {
    let retry = SendErrorKind::Retryable { retry_after };
    match code {
        // Throughput exceeded, pair rate limit, Meta-side generic/unknown/service errors.
        Some(130429 | 131056 | 131000..=131002) => retry,
        // Meta documents these as temporary: API service unavailable (2), application request
        // limit (4), business account rate limit (80007), service unavailable (131016), server
        // temporarily unavailable (133004).
        Some(2 | 4 | 80007 | 131016 | 133004) => retry,
        Some(131047) => SendErrorKind::OutsideWindow,
        Some(131049) => SendErrorKind::RateLimitedDoNotRetrySoon,
        Some(190 | 0) => SendErrorKind::AuthExpired,
        Some(_) => SendErrorKind::Permanent,
        None => match http_status {
            Some(408 | 429) => retry,
            Some(s) if s >= 500 => retry,
            _ => SendErrorKind::Permanent,
        },
    }
}

/// `{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"},
/// "fbtrace_id"}}`.
#[derive(Debug, Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    message: Option<String>,
    code: Option<i64>,
    error_subcode: Option<i64>,
    fbtrace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_error(code: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": {
                "message": "(#131047) Re-engagement message",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": "..."},
                "fbtrace_id": "AbCdEf"
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_error_code_decides_even_when_the_http_status_says_otherwise() {
        // A 500 carrying a permanent code is permanent; a 400 carrying a throttling code retries.
        let e = SendError::from_response(500, &meta_error(131026), None);
        assert_eq!(e.kind, SendErrorKind::Permanent);
        let e = SendError::from_response(400, &meta_error(130429), None);
        assert!(e.is_retryable());
    }

    #[test]
    fn every_documented_code_is_classified_as_protocols_md_says() {
        let cases: [(i64, SendErrorKind); 12] = [
            (130429, SendErrorKind::Retryable { retry_after: None }),
            (131056, SendErrorKind::Retryable { retry_after: None }),
            (131000, SendErrorKind::Retryable { retry_after: None }),
            (131001, SendErrorKind::Retryable { retry_after: None }),
            (131002, SendErrorKind::Retryable { retry_after: None }),
            (131047, SendErrorKind::OutsideWindow),
            (131049, SendErrorKind::RateLimitedDoNotRetrySoon),
            (190, SendErrorKind::AuthExpired),
            (131026, SendErrorKind::Permanent),
            (131051, SendErrorKind::Permanent),
            (132000, SendErrorKind::Permanent),
            (132012, SendErrorKind::Permanent),
        ];
        for (code, kind) in cases {
            assert_eq!(classify(Some(400), Some(code), None), kind, "code {code}");
        }
    }

    #[test]
    fn without_a_code_server_errors_retry_and_client_errors_do_not() {
        assert!(SendError::from_response(502, b"<html>Bad gateway</html>", None).is_retryable());
        assert!(SendError::from_response(500, b"", None).is_retryable());
        assert!(SendError::from_response(429, b"", None).is_retryable());
        assert!(!SendError::from_response(400, b"not json", None).is_retryable());
        assert!(!SendError::from_response(404, b"{}", None).is_retryable());
    }

    #[test]
    fn meta_fields_are_kept_and_retry_after_is_passed_through() {
        let wait = Duration::from_secs(7);
        let e = SendError::from_response(429, &meta_error(130429), Some(wait));
        assert_eq!(e.code, Some(130429));
        assert_eq!(e.http_status, Some(429));
        assert_eq!(e.fbtrace_id.as_deref(), Some("AbCdEf"));
        assert_eq!(e.retry_after(), Some(wait));
        let shown = e.to_string();
        assert!(
            shown.contains("code 130429") && shown.contains("HTTP 429"),
            "{shown}"
        );
    }

    #[test]
    fn invalid_requests_are_never_retryable() {
        let e = SendError::invalid(InvalidRequest::TextTooLong {
            chars: 5000,
            limit: 4096,
        });
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("5000"));
    }
}
