//! Starts the real server on port 0 with a fake Graph API, on SQLite and in-process backends or on
//! PostgreSQL and Redis, and talks HTTP to it as Meta and web visitors do.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parley::app::{App, AppState, BuildOptions};
use parley::channels::whatsapp::sign;
use parley::config::Config;
use parley::domain::Clock;
use parley::testkit::fake_graph::FakeGraph;
use parley::testkit::fake_twilio::FakeTwilio;
use parley::testkit::fake_waha::FakeWaha;
use parley::testkit::smtp_sink::SmtpSink;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common;

pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const ACCESS_TOKEN: &str = "test-access-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const TWILIO_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub const TWILIO_AUTH_TOKEN: &str = "test-twilio-auth-token";
/// The URL Twilio is configured to call (what its signatures cover).
pub const TWILIO_WEBHOOK_URL: &str = "https://parley.example.com/webhooks/twilio";
pub const TWILIO_NUMBER: &str = "+14155238886";
pub const WAHA_API_KEY: &str = "test-waha-api-key";
pub const WAHA_HMAC_KEY: &str = "test-waha-hmac-key";
/// Mailgun's published test vector key (`vector_mailgun_signature.json`, the multimail fixture).
pub const MAILGUN_SIGNING_KEY: &str = "foo";
pub const EMAIL_WEBHOOK_SECRET: &str = "test-email-path-secret";
pub const EMAIL_WEBHOOK_USER: &str = "postmark";
pub const EMAIL_WEBHOOK_PASSWORD: &str = "test-email-password";
pub const EMAIL_FROM: &str = "Skyline Habitat <hello@skyline.example>";
pub const PUBLIC_URL: &str = "https://parley.example.com";

/// The provider fakes a test server talks to; kept across a restart.
#[derive(Clone)]
pub struct Fakes {
    pub graph: Arc<FakeGraph>,
    pub twilio: Arc<FakeTwilio>,
    pub waha: Arc<FakeWaha>,
    pub smtp: Arc<SmtpSink>,
}

impl Fakes {
    pub async fn start() -> Self {
        Self {
            graph: Arc::new(FakeGraph::start().await.unwrap()),
            twilio: Arc::new(FakeTwilio::start().await.unwrap()),
            waha: Arc::new(FakeWaha::start(WAHA_API_KEY).await.unwrap()),
            smtp: Arc::new(SmtpSink::start().await.unwrap()),
        }
    }
}

/// Runs each named `async fn(Backends)` twice: on embedded backends (SQLite, in-process) and on
/// PostgreSQL and Redis (skipped with a reason, or failing under `PARLEY_REQUIRE_SERVICES=1`,
/// when those are not configured).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backends::Embedded).await;
                }
            )*
        }
        mod postgres_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backends) = super::Backends::servers() else { return };
                    super::$name(backends).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// Which backends the server runs on.
#[derive(Debug, Clone)]
pub enum Backends {
    /// SQLite in a temporary data dir, in-process queue, memory and live events.
    Embedded,
    /// PostgreSQL (a fresh schema) and Redis (a fresh key prefix).
    Servers {
        database_url: String,
        schema: String,
        redis_url: String,
        prefix: String,
    },
}

impl Backends {
    /// PostgreSQL and Redis from the test environment, or `None` (after printing why) to skip.
    pub fn servers() -> Option<Self> {
        let database_url = common::postgres_url()?;
        let redis_url = common::redis_url()?;
        Some(Backends::Servers {
            database_url,
            schema: common::unique_name("gw"),
            redis_url,
            prefix: common::unique_name("gw"),
        })
    }
}

/// A running server and the fakes around it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub graph: Arc<FakeGraph>,
    pub fakes: Fakes,
    pub data_dir: PathBuf,
    /// The running application's shared state (its store, consent, clock).
    pub state: Arc<AppState>,
    backends: Backends,
    clock: Option<Arc<dyn Clock>>,
    extra_env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct Spawn {
    pub backends: Backends,
    pub background_tasks: bool,
    pub extra_env: Vec<(String, String)>,
    /// The clock the server reads (the system clock when `None`).
    pub clock: Option<Arc<dyn Clock>>,
}

impl Spawn {
    pub fn new(backends: Backends) -> Self {
        Self {
            backends,
            background_tasks: true,
            extra_env: Vec::new(),
            clock: None,
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_owned(), value.to_owned()));
        self
    }
}

impl TestApp {
    pub async fn embedded() -> Self {
        Self::start(Spawn::new(Backends::Embedded)).await
    }

    pub async fn start(spawn: Spawn) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        Self::start_on(spawn, data_dir, Some(dir), Fakes::start().await).await
    }

    async fn start_on(
        spawn: Spawn,
        data_dir: PathBuf,
        dir: Option<tempfile::TempDir>,
        fakes: Fakes,
    ) -> Self {
        let graph = fakes.graph.clone();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let manifest = env!("CARGO_MANIFEST_DIR");
        for (k, v) in [
            ("PARLEY_DATA_DIR", data_dir.display().to_string()),
            ("PARLEY_PROMPTS_DIR", format!("{manifest}/prompts")),
            ("PARLEY_KNOWLEDGE_DIR", format!("{manifest}/knowledge")),
            ("PARLEY_KNOWLEDGE_AUTOLOAD", "true".to_owned()),
            ("PARLEY_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("PARLEY_WORKERS", "4".to_owned()),
            ("WHATSAPP_APP_SECRET", APP_SECRET.to_owned()),
            ("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN.to_owned()),
            ("WHATSAPP_PHONE_NUMBER_ID", PHONE_NUMBER_ID.to_owned()),
            ("WHATSAPP_ACCESS_TOKEN", ACCESS_TOKEN.to_owned()),
            ("WHATSAPP_API_BASE", graph.base_url()),
            ("PARLEY_CONFIG", format!("{manifest}/tests/data/empty.toml")),
            ("TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT_SID.to_owned()),
            ("TWILIO_AUTH_TOKEN", TWILIO_AUTH_TOKEN.to_owned()),
            ("TWILIO_API_BASE", fakes.twilio.base_url()),
            ("TWILIO_WEBHOOK_URL", TWILIO_WEBHOOK_URL.to_owned()),
            ("TWILIO_FROM_NUMBER", TWILIO_NUMBER.to_owned()),
            ("WAHA_URL", fakes.waha.base_url()),
            ("WAHA_API_KEY", WAHA_API_KEY.to_owned()),
            ("WAHA_HMAC_KEY", WAHA_HMAC_KEY.to_owned()),
            ("PARLEY_PUBLIC_URL", PUBLIC_URL.to_owned()),
            ("SMTP_URL", fakes.smtp.url()),
            ("EMAIL_FROM", EMAIL_FROM.to_owned()),
            ("MAILGUN_SIGNING_KEY", MAILGUN_SIGNING_KEY.to_owned()),
            ("EMAIL_WEBHOOK_SECRET", EMAIL_WEBHOOK_SECRET.to_owned()),
            ("EMAIL_WEBHOOK_USER", EMAIL_WEBHOOK_USER.to_owned()),
            ("EMAIL_WEBHOOK_PASSWORD", EMAIL_WEBHOOK_PASSWORD.to_owned()),
        ] {
            env.insert(k.to_owned(), v);
        }
        let mut options = BuildOptions {
            background_tasks: spawn.background_tasks,
            ..BuildOptions::default()
        };
        if let Some(clock) = &spawn.clock {
            options.clock = clock.clone();
        }
        if let Backends::Servers {
            database_url,
            schema,
            redis_url,
            prefix,
        } = &spawn.backends
        {
            env.insert("DATABASE_URL".into(), database_url.clone());
            env.insert("REDIS_URL".into(), redis_url.clone());
            env.insert("PARLEY_REDIS_PREFIX".into(), prefix.clone());
            options.postgres_schema = Some(schema.clone());
        }
        for (k, v) in &spawn.extra_env {
            env.insert(k.clone(), v.clone());
        }
        let config = Config::from_sources(&env).expect("test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App::build_with(config, listener, options)
            .await
            .expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        TestApp {
            base,
            http: reqwest::Client::new(),
            graph,
            fakes,
            data_dir,
            backends: spawn.backends,
            clock: spawn.clock,
            state,
            extra_env: spawn.extra_env,
            _dir: dir,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Aborts the server and its tasks at once, as a crash would, then starts a new one on the
    /// same data (same data dir, schema and prefix), settings and fake Graph API.
    pub async fn crash_and_restart(mut self, background_tasks: bool) -> Self {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
        let spawn = Spawn {
            backends: self.backends.clone(),
            background_tasks,
            clock: self.clock.clone(),
            extra_env: self.extra_env.clone(),
        };
        let dir = self._dir.take();
        let fakes = self.fakes.clone();
        Self::start_on(spawn, self.data_dir.clone(), dir, fakes).await
    }

    /// Stops gracefully (like SIGTERM) and returns how the server ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.take().unwrap().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a body to the WhatsApp webhook signed with the configured app secret.
    pub async fn post_whatsapp(&self, body: &[u8]) -> reqwest::Response {
        self.post_whatsapp_signed(body, &sign(APP_SECRET.as_bytes(), body))
            .await
    }

    pub async fn post_whatsapp_signed(&self, body: &[u8], signature: &str) -> reqwest::Response {
        self.http
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// A text response from an admin GET (CSV exports).
    pub async fn admin_get_text(&self, path: &str) -> String {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.text().await.unwrap()
    }

    /// The sends (not mark-reads) the fake Graph API received for one recipient, as JSON bodies.
    pub fn sends_to(&self, wa_id: &str) -> Vec<Value> {
        self.graph
            .sent_messages()
            .into_iter()
            .filter(|r| r.body["to"] == wa_id)
            .map(|r| r.body)
            .collect()
    }

    /// The text of each send to one recipient (empty for templates).
    pub fn texts_sent_to(&self, wa_id: &str) -> Vec<String> {
        self.sends_to(wa_id)
            .iter()
            .map(|b| b["text"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until at least `n` sends reached one recipient; panics after 20 seconds.
    pub async fn wait_for_sends_to(&self, wa_id: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let sends = self.sends_to(wa_id);
            if sends.len() >= n {
                return sends;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} sends to {wa_id}; have {sends:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `wait_for_sends_to`, as texts.
    pub async fn wait_for_texts_to(&self, wa_id: &str, n: usize) -> Vec<String> {
        self.wait_for_sends_to(wa_id, n).await;
        self.texts_sent_to(wa_id)
    }

    /// The messages of a conversation, as staff see them.
    pub async fn messages(&self, conversation: &str) -> Vec<Value> {
        let body = self
            .admin_get(&format!("/api/v1/conversations/{conversation}/messages"))
            .await;
        body["messages"].as_array().unwrap().clone()
    }

    /// Waits until the contact's consent state is `state` (`opted_out`, ...) and returns it.
    pub async fn wait_for_consent(&self, contact: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let consent = self
                .admin_get(&format!("/api/v1/contacts/{contact}/consent"))
                .await;
            if consent["state"] == state {
                return consent;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "consent never became {state}: {consent:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the conversation has `n` bot messages with status beyond queued.
    pub async fn wait_for_bot_messages(&self, conversation: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.messages(conversation).await;
            let done: Vec<Value> = messages
                .iter()
                .filter(|m| m["author"] == "bot" && m["status"] != "queued")
                .cloned()
                .collect();
            if done.len() >= n {
                return done;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {n} delivered bot messages; have {messages:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A Meta webhook envelope with text messages from one sender.
pub fn whatsapp_texts(wa_id: &str, messages: &[(&str, &str)]) -> Vec<u8> {
    let messages: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (wamid, body))| {
            json!({
                "from": wa_id,
                "id": wamid,
                "timestamp": (1_700_000_000 + i).to_string(),
                "type": "text",
                "text": {"body": body}
            })
        })
        .collect();
    let envelope = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": "Asha"}, "wa_id": wa_id}],
                    "messages": messages
                }
            }]
        }]
    });
    serde_json::to_vec(&envelope).unwrap()
}

/// The conversation id Parley derives for a WhatsApp sender of the default tenant.
pub fn whatsapp_conversation(wa_id: &str) -> String {
    parley::domain::ConversationId::derive(
        &parley::domain::TenantId::default_tenant(),
        parley::domain::Channel::Whatsapp,
        wa_id,
    )
    .to_string()
}
