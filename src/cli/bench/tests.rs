//! The bench against a stand-in Parley: an axum server that checks signatures like the real one,
//! acknowledges, and replies through the bench's own sink, in order, as the server under test does.

use super::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::mpsc;

const SECRET: &str = "bench-test-secret";
const PNID: &str = "106540352242922";

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
}

#[test]
fn arguments_have_sensible_defaults() {
    let args = parse(&["--app-secret", SECRET, "--phone-number-id", PNID]).unwrap();
    assert_eq!(args.concurrency, 16);
    assert_eq!(args.requests, 5_000);
    assert_eq!(args.duration, None);
    assert_eq!(args.conversations, 256);
    assert_eq!(args.warmup, 200);
    assert_eq!(args.sink_listen, None);
    assert_eq!(args.drain_timeout, Duration::from_secs(30));
    assert!(!args.json);
}

#[test]
fn duration_and_request_count_exclude_each_other() {
    let args = parse(&[
        "--app-secret",
        "s",
        "--phone-number-id",
        "p",
        "--duration",
        "10s",
    ])
    .unwrap();
    assert_eq!(args.duration, Some(Duration::from_secs(10)));
    assert!(
        parse(&[
            "--app-secret",
            "s",
            "--phone-number-id",
            "p",
            "-d",
            "10s",
            "-n",
            "5"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "--app-secret",
            "s",
            "--phone-number-id",
            "p",
            "--concurrency",
            "0"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "--app-secret",
            "s",
            "--phone-number-id",
            "p",
            "--conversations",
            "0"
        ])
        .is_err()
    );
}

#[test]
fn the_app_secret_shows_neither_in_debug_output_nor_in_help() {
    let args = parse(&["--app-secret", SECRET, "--phone-number-id", PNID]).unwrap();
    assert!(!format!("{args:?}").contains(SECRET));
    let help = <Cli as clap::CommandFactory>::command()
        .render_long_help()
        .to_string();
    assert!(help.contains("WHATSAPP_APP_SECRET"));
    assert!(help.contains("--sink-listen"));
}

/// What the stand-in server saw.
#[derive(Default)]
struct Seen {
    wamids: Vec<String>,
    bad_signatures: u64,
}

#[derive(Clone)]
struct Stub {
    signer: Signer,
    seen: Arc<Mutex<Seen>>,
    replies: mpsc::UnboundedSender<(String, String)>,
}

async fn webhook(State(stub): State<Stub>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if signature != stub.signer.sign(&body) {
        stub.seen.lock().unwrap().bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let message = &v["entry"][0]["changes"][0]["value"]["messages"][0];
    let wamid = message["id"].as_str().unwrap().to_owned();
    let from = message["from"].as_str().unwrap().to_owned();
    stub.seen.lock().unwrap().wamids.push(wamid.clone());
    stub.replies.send((from, wamid)).unwrap();
    StatusCode::OK
}

/// Starts the stand-in; its replies go to `sink` (the bench's sink address).
async fn start_stub(sink: SocketAddr, with_context: bool) -> (String, Arc<Mutex<Seen>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
    let stub = Stub {
        signer: Signer::new(SECRET.as_bytes()),
        seen: Arc::default(),
        replies: tx,
    };
    let seen = stub.seen.clone();
    // One replier, in arrival order: order per conversation holds, as in the real server.
    tokio::spawn(async move {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{sink}/v21.0/{PNID}/messages");
        while let Some((to, wamid)) = rx.recv().await {
            let read =
                json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid});
            client.post(&url).json(&read).send().await.unwrap();
            let mut reply = json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                                   "to": to, "type": "text", "text": {"body": "Prices start at 10."}});
            if with_context {
                reply["context"] = json!({"message_id": wamid});
            }
            let answer: Value = client
                .post(&url)
                .json(&reply)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answer["contacts"][0]["wa_id"], to.as_str());
        }
    });
    let app = Router::new()
        .route("/webhooks/whatsapp", post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn args(url: &str, extra: &[&str]) -> BenchArgs {
    let mut all = vec![
        "--url",
        url,
        "--app-secret",
        SECRET,
        "--phone-number-id",
        PNID,
    ];
    all.extend_from_slice(extra);
    parse(&all).unwrap()
}

#[tokio::test]
async fn an_end_to_end_run_acknowledges_and_pairs_every_message() {
    let sink = free_port();
    let (url, seen) = start_stub(sink, false).await;
    let sink_arg = sink.to_string();
    let args = args(
        &url,
        &[
            "-c",
            "4",
            "-n",
            "120",
            "--conversations",
            "8",
            "--warmup",
            "10",
            "--sink-listen",
            &sink_arg,
        ],
    );
    let report = execute(&args).await.unwrap();

    assert_eq!(report.webhooks.sent, 120);
    assert_eq!(report.webhooks.acknowledged, 120);
    assert_eq!(report.webhooks.statuses.get("200"), Some(&120));
    assert_eq!(report.webhooks.latency.count, 120);
    assert!(report.webhooks.acknowledged_per_sec > 0.0);
    assert_eq!(report.preparation.as_ref().unwrap().bodies, 120);

    let replies = report.replies.as_ref().unwrap();
    assert_eq!(replies.expected, 120);
    assert_eq!(replies.received, 120);
    assert_eq!(replies.missing, 0);
    assert_eq!(replies.duplicates, 0);
    assert_eq!(replies.unmatched, 0);
    assert_eq!(replies.warmup_replies, 10);
    assert_eq!(replies.mark_reads, 130);
    assert_eq!(replies.latency.count, 120);
    assert!(replies.latency.p50_us >= report.webhooks.latency.p50_us / 2);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0);
    assert_eq!(seen.wamids.len(), 130);
    let distinct: HashSet<&String> = seen.wamids.iter().collect();
    assert_eq!(distinct.len(), 130, "every delivery has its own wamid");

    let text = report.render();
    assert!(text.contains("concurrency 4, 120 requests, 8 conversations, 10 warm-up"));
    assert!(text.contains("--concurrency 4 --requests 120 --conversations 8 --warmup 10"));
    assert!(text.contains("received 120 of 120"));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!text.contains(SECRET) && !json.contains(SECRET));
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["config"]["concurrency"], 4);
    assert_eq!(v["replies"]["received"], 120);
    assert!(v["webhooks"]["latency"]["p99_us"].is_u64());
}

#[tokio::test]
async fn a_timed_run_stops_at_its_deadline_and_uses_context_to_pair() {
    let sink = free_port();
    let (url, _) = start_stub(sink, true).await;
    let sink_arg = sink.to_string();
    let args = args(
        &url,
        &[
            "-c",
            "2",
            "-d",
            "300ms",
            "--conversations",
            "2",
            "--warmup",
            "0",
            "--sink-listen",
            &sink_arg,
        ],
    );
    let started = Instant::now();
    let report = execute(&args).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(report.preparation.is_none());
    assert!(report.webhooks.acknowledged > 0);
    let replies = report.replies.unwrap();
    assert_eq!(replies.received, report.webhooks.acknowledged);
    assert_eq!(
        (replies.missing, replies.duplicates, replies.unmatched),
        (0, 0, 0)
    );
    assert!(report.config.command_line().contains("--duration 300ms"));
}

#[tokio::test]
async fn a_wrong_app_secret_stops_the_run_with_a_hint() {
    let (url, seen) = start_stub(free_port(), false).await;
    let mut args = args(&url, &["-n", "5", "--warmup", "3"]);
    args.app_secret = SecretString::from("not-the-secret");
    let error = execute(&args).await.unwrap_err().to_string();
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("WHATSAPP_APP_SECRET"), "{error}");
    assert!(!error.contains("not-the-secret"));
    assert_eq!(seen.lock().unwrap().bad_signatures, 3);
}

#[tokio::test]
async fn a_server_that_is_not_running_gets_a_one_line_explanation() {
    let url = format!("http://{}", free_port());
    let error = execute(&args(&url, &["-n", "5"]))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("could not reach Parley at {url}: is `parley serve` running?")
    );
}
