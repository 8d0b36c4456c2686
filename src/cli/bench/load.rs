//! The senders: `concurrency` tasks, each with its own keep-alive HTTP/1.1 connection (as `wrk`
//! and `oha` do), taking the next message, POSTing it and timing the acknowledgement. Each task
//! keeps its own statistics, merged at the end, so the hot path takes no lock (except the reply
//! tracker's, in end-to-end runs). They speak HTTP through hyper's connection API directly: no
//! pool to lock and no per-request URL or header map to build, which keeps the generator's own
//! CPU, taken from the same cores as the server's, low.

use super::envelope::{Prepared, Workload};
use super::stats::AckStats;
use super::tracker::ReplyTracker;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

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

/// Where the webhooks go: a plain-HTTP server's address and the webhook's path.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, to connect to and to send as the `Host` header.
    authority: String,
    host: HeaderValue,
    path: Uri,
}

impl Endpoint {
    /// The endpoint of `url`, which must be `http://` (the bench loads a server over loopback or a
    /// private network, not through TLS).
    pub fn of(url: &reqwest::Url) -> anyhow::Result<Self> {
        if url.scheme() != "http" {
            bail!("the bench speaks plain HTTP: give it the server's http:// address, not `{url}`");
        }
        let host = url.host_str().context("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        Ok(Self {
            host: HeaderValue::from_str(&authority).context("the URL's host is not a header")?,
            // The path and query, as the request line carries them.
            path: url[url::Position::BeforePath..url::Position::AfterQuery]
                .parse()
                .context("the URL's path is not a request target")?,
            authority,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, &'static str> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|_| "connect")?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "connect")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes the connection; a broken
            // connection shows as the next request's error.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// What every sender shares.
#[derive(Debug, Clone)]
pub struct Target {
    pub webhook: Endpoint,
    /// How long one request may take before it counts as a timeout.
    pub timeout: Duration,
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
    // This sender's connection, opened on first use and again after any failure.
    let mut connection = None;
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
        let outcome = tokio::time::timeout(
            target.timeout,
            post(&target.webhook, &mut connection, body, signature),
        )
        .await
        .unwrap_or(Err("timeout"));
        let done = Instant::now();
        match outcome {
            Ok(status) => {
                stats.record_status(status, done - started, done);
                if !(200..300).contains(&status)
                    && let Some(tracker) = &target.tracker
                {
                    tracker.withdraw(conversation, seq);
                }
            }
            Err(kind) => {
                // Whatever state the connection is in, the next request gets a fresh one.
                connection = None;
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

/// POSTs one signed delivery on `connection` (opening it first if need be) and reads the
/// answer to its end, so the connection is ready for the next one. Returns the status code, or
/// what kind of failure it was.
async fn post(
    endpoint: &Endpoint,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    body: Bytes,
    signature: HeaderValue,
) -> Result<u16, &'static str> {
    let sender = match connection {
        Some(sender) if !sender.is_closed() => sender,
        _ => connection.insert(endpoint.connect().await?),
    };
    sender.ready().await.map_err(|_| "io")?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(endpoint.path.clone())
        .header(HOST, endpoint.host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))
        .map_err(|_| "other")?;
    let response = sender.send_request(request).await.map_err(|_| "io")?;
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|_| "io")?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
        Endpoint::of(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn an_endpoint_keeps_the_address_host_and_path_of_its_url() {
        let plain = endpoint("http://127.0.0.1:8080/webhooks/whatsapp").unwrap();
        assert_eq!(plain.authority, "127.0.0.1:8080");
        assert_eq!(plain.host, "127.0.0.1:8080");
        assert_eq!(plain.path, "/webhooks/whatsapp");
        let v6 = endpoint("http://[::1]/base/webhooks/whatsapp?x=1").unwrap();
        assert_eq!(v6.authority, "[::1]:80");
        assert_eq!(v6.path, "/base/webhooks/whatsapp?x=1");
        let named = endpoint("http://localhost:9000/webhooks/whatsapp").unwrap();
        assert_eq!(named.authority, "localhost:9000");
    }

    #[test]
    fn an_https_url_is_refused_with_a_sentence() {
        let err = endpoint("https://parley.example/webhooks/whatsapp").unwrap_err();
        assert!(err.to_string().contains("plain HTTP"), "{err}");
    }
}
