//! What the provider API clients (Twilio, WAHA) share: one way to build the HTTP client, read
//! `Retry-After`, and tell a media kind from a MIME type.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::domain::MediaKind;

/// A client with a per-call timeout and Parley's user agent.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client's TLS backend initialises")
}

/// `Retry-After` in seconds, when the provider sent one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The kind of media a MIME type names; anything else is a document.
pub(crate) fn media_kind(mime: Option<&str>) -> MediaKind {
    match mime.and_then(|m| m.split('/').next()) {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}
