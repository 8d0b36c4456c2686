//! What one delivery attempt came to, and how an HTTP answer maps onto it: 2xx delivered; 429,
//! 408 and 5xx (and no answer at all) retried, honouring `Retry-After`; any other 4xx is
//! permanent (the same request would fail again) and dead-letters the job.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The outcome of one job's attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The CRM has it; with the CRM's id for the lead when the answer named one.
    Delivered { external_id: Option<String> },
    /// Try again later (not before `retry_after`, when the CRM said so).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The CRM refused it for good.
    Dead { error: String },
}

impl Outcome {
    pub fn delivered() -> Self {
        Outcome::Delivered { external_id: None }
    }

    /// A transport failure (no answer): retried.
    pub fn unreachable(service: &str, err: &reqwest::Error) -> Self {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        Outcome::Retry {
            error: format!("{service}: {what}"),
            retry_after: None,
        }
    }

    /// An answer that was not a success: retried or dead by status. `detail` is a short,
    /// non-personal description (the CRM's error category or message).
    pub fn from_status(
        service: &str,
        status: StatusCode,
        headers: &HeaderMap,
        detail: &str,
    ) -> Self {
        let error = if detail.is_empty() {
            format!("{service} answered {}", status.as_u16())
        } else {
            format!("{service} answered {}: {detail}", status.as_u16())
        };
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Outcome::Retry {
                error,
                retry_after: retry_after(headers),
            }
        } else {
            Outcome::Dead { error }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(raw).ok()?.timestamp();
    let wait = at.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    Some(Duration::from_millis(wait.max(0) as u64))
}

/// At most 200 characters of a CRM's error text, on one line.
pub fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    #[test]
    fn statuses_map_to_retry_or_dead() {
        let none = HeaderMap::new();
        for status in [429, 408, 500, 502, 503] {
            let s = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(
                    Outcome::from_status("x", s, &none, ""),
                    Outcome::Retry { .. }
                ),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 422] {
            let s = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(
                    Outcome::from_status("x", s, &none, ""),
                    Outcome::Dead { .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        let outcome = Outcome::from_status(
            "HubSpot",
            StatusCode::TOO_MANY_REQUESTS,
            &headers("10"),
            "RATE_LIMITS",
        );
        assert_eq!(
            outcome,
            Outcome::Retry {
                error: "HubSpot answered 429: RATE_LIMITS".into(),
                retry_after: Some(Duration::from_secs(10))
            }
        );
    }
}
