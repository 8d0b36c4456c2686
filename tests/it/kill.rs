//! The real `parley serve` binary, killed with SIGKILL while it is answering, then started again on
//! the same data: no acknowledged message goes unanswered, and the only duplicates are sends that
//! were already at the provider when the process died (WhatsApp has no idempotency key, so no
//! system can rule those out; Parley counts them as `outbound_uncertain`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use parley::testkit::fake_graph::FakeGraph;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{
    ACCESS_TOKEN, ADMIN_TOKEN, APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN, whatsapp_texts,
};

const PROSPECTS: usize = 40;
const SENDERS: usize = 4;

/// Starts the binary on port 0 and returns it with the base URL it reports listening on.
async fn start_binary(data_dir: &Path, graph: &FakeGraph) -> (Child, String) {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PARLEY_LISTEN", "127.0.0.1:0")
        .env("PARLEY_LOG_FORMAT", "json")
        .env("PARLEY_DATA_DIR", data_dir)
        .env("PARLEY_PROMPTS_DIR", format!("{manifest}/prompts"))
        .env("PARLEY_KNOWLEDGE_DIR", format!("{manifest}/knowledge"))
        .env("PARLEY_CONFIG", format!("{manifest}/tests/data/empty.toml"))
        .env("PARLEY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("PARLEY_SENDERS", SENDERS.to_string())
        .env("WHATSAPP_APP_SECRET", APP_SECRET)
        .env("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
        .env("WHATSAPP_PHONE_NUMBER_ID", PHONE_NUMBER_ID)
        .env("WHATSAPP_ACCESS_TOKEN", ACCESS_TOKEN)
        .env("WHATSAPP_API_BASE", graph.base_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the parley binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "listening" {
                return entry["port"].as_u64().expect("the port is logged");
            }
        }
        panic!("parley exited before listening");
    })
    .await
    .expect("parley listens within two minutes");
    // Keep draining its log so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

fn replies_by_prospect(graph: &FakeGraph) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for send in graph.sent_messages() {
        if let Some(to) = send.body["to"].as_str() {
            *counts.entry(to.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_processing_loses_nothing_and_duplicates_only_sends_in_flight() {
    let graph = FakeGraph::start().await.unwrap();
    // Slow provider calls, so sends are in flight when the process dies.
    graph.set_delay(Duration::from_millis(40));
    let data = tempfile::tempdir().unwrap();
    let (mut first, base) = start_binary(data.path(), &graph).await;

    let http = reqwest::Client::new();
    let prospects: Vec<String> = (0..PROSPECTS).map(|i| format!("9198{i:08}")).collect();
    for (i, wa) in prospects.iter().enumerate() {
        let body = whatsapp_texts(
            wa,
            &[(&format!("wamid.kill.{i}"), "What is the price of a 2 BHK?")],
        );
        let signature = parley::channels::whatsapp::sign(APP_SECRET.as_bytes(), &body);
        let response = http
            .post(format!("{base}/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "acknowledged means recorded");
    }

    // Kill it while replies are still going out.
    graph.wait_for_sent(5, Duration::from_secs(60)).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let before_restart = replies_by_prospect(&graph);
    let answered_before: usize = before_restart.len();
    assert!(
        answered_before < PROSPECTS,
        "the kill came too late to test anything ({answered_before} answered)"
    );

    let (mut second, _) = start_binary(data.path(), &graph).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answered = replies_by_prospect(&graph);
        if prospects.iter().all(|p| answered.contains_key(p)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the restart {} of {PROSPECTS} prospects were answered",
            answered.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let anything still queued go out before counting duplicates.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.start_kill().unwrap();
    second.wait().await.unwrap();

    let answered = replies_by_prospect(&graph);
    let duplicated: Vec<(&String, &usize)> = answered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.iter().all(|(_, n)| **n == 2),
        "a reply is sent at most twice: {duplicated:?}"
    );
    assert!(
        duplicated.len() <= SENDERS,
        "only sends in flight at the kill (at most {SENDERS}) may repeat: {duplicated:?}"
    );
    assert_eq!(answered.len(), PROSPECTS);
    eprintln!(
        "killed with {answered_before} of {PROSPECTS} answered; {} sends repeated after the restart",
        duplicated.len()
    );
}
