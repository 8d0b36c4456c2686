//! The senders: `concurrency` tasks sharing one keep-alive connection pool, each taking the next
//! message, POSTing it and timing the acknowledgement. Each task keeps its own statistics, merged
//! at the end, so the hot path takes no lock (except the reply tracker's, in end-to-end runs).

use super::envelope::{Prepared, Workload};
use super::stats::AckStats;
use super::tracker::ReplyTracker;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The signature header Meta sends.
const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Where a phase's messages come from: prepared before timing, or built as they are sent.
#[derive(Debug)]
pub struct Source {
    workload: Arc<Workload>,
    first_seq: u64,
    next: AtomicU64,
    /// How many messages this phase sends, if bounded by count.
    limit: Option<u64>,
    /// Bodies built and signed ahead of the timed phase (count-bounded phases).
    prepared: Option<Vec<Prepared>>,
    /// Whether replies to these messages count (false in warm-up).
    counted: bool,
}

impl Source {
    /// Builds and signs messages `first_seq..first_seq + count` now, so sending them costs only
    /// the send.
    pub fn prepared(workload: Arc<Workload>, first_seq: u64, count: u64, counted: bool) -> Self {
        let prepared = (first_seq..first_seq + count)
            .map(|seq| workload.prepare(seq))
            .collect();
        Self {
            workload,
            first_seq,
            next: AtomicU64::new(0),
            limit: Some(count),
            prepared: Some(prepared),
            counted,
        }
    }

    /// Messages from `first_seq` on, built as they are sent, until `limit` messages or the
    /// phase's deadline.
    pub fn lazy(
        workload: Arc<Workload>,
        first_seq: u64,
        limit: Option<u64>,
        counted: bool,
    ) -> Self {
        Self {
            workload,
            first_seq,
            next: AtomicU64::new(0),
            limit,
            prepared: None,
            counted,
        }
    }

    fn take(&self, deadline: Option<Instant>) -> Option<Prepared> {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|limit| index >= limit) {
            return None;
        }
        match &self.prepared {
            Some(prepared) => prepared.get(index as usize).cloned(),
            None => Some(self.workload.prepare(self.first_seq + index)),
        }
    }
}

/// What every sender shares.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub webhook_url: reqwest::Url,
    pub tracker: Option<Arc<ReplyTracker>>,
}

/// Runs one phase: `concurrency` senders until the source is empty or `duration` has passed.
pub async fn run_phase(
    target: &Target,
    source: Arc<Source>,
    concurrency: usize,
    duration: Option<Duration>,
) -> AckStats {
    let deadline = duration.map(|d| Instant::now() + d);
    let senders: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = target.clone();
            let source = source.clone();
            tokio::spawn(async move { sender(target, source, deadline).await })
        })
        .collect();
    let mut total = AckStats::default();
    for sender in senders {
        match sender.await {
            Ok(stats) => total.merge(&stats),
            Err(e) => eprintln!("a sender task failed: {e}"),
        }
    }
    total
}

async fn sender(target: Target, source: Arc<Source>, deadline: Option<Instant>) -> AckStats {
    let mut stats = AckStats::default();
    let content_type = HeaderValue::from_static("application/json");
    while let Some(message) = source.take(deadline) {
        let Prepared {
            seq,
            conversation,
            body,
            signature,
        } = message;
        let started = Instant::now();
        if let Some(tracker) = &target.tracker {
            tracker.sent(conversation, seq, started, source.counted);
        }
        let result = target
            .client
            .post(target.webhook_url.clone())
            .header(CONTENT_TYPE, content_type.clone())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let outcome = match result {
            // Read the (small) body to the end so the connection goes back to the pool.
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(_) => Ok(status),
                    Err(e) => Err(error_kind(&e)),
                }
            }
            Err(e) => Err(error_kind(&e)),
        };
        let done = Instant::now();
        match outcome {
            Ok(status) => {
                stats.record_status(status.as_u16(), done - started, done);
                if !status.is_success()
                    && let Some(tracker) = &target.tracker
                {
                    tracker.withdraw(conversation, seq);
                }
            }
            Err(kind) => {
                stats.record_error(kind, done);
                if let Some(tracker) = &target.tracker {
                    tracker.withdraw(conversation, seq);
                }
                if kind == "connect" {
                    // Do not spin while the server is down.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    stats
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_request() || e.is_decode() {
        "io"
    } else {
        "other"
    }
}
