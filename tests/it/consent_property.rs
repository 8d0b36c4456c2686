//! The consent guarantee as a property: over random interleavings of prospect messages (STOP and
//! START variants, HELP, near-misses, questions), staff replies, proactive messages (text and
//! template) and clock jumps, no message is ever handed to the provider for a contact who has
//! opted out, except the one confirmation of each opt-out, which is sent at once.
//!
//! It drives the real pipeline (store, worker, consent gate, sender, WhatsApp client against the
//! fake Graph API) step by step with an injected clock. The case count is
//! `PARLEY_CONSENT_CASES` (default 10,000 on SQLite, split over four tests that run in parallel;
//! the PostgreSQL + Redis run takes a tenth of it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parley::app::AppState;
use parley::domain::{
    Channel, ConversationId, InboundMessage, ManualClock, MessageContent, ProviderMessageId,
    TenantId,
};
use parley::pipeline::compose::{self, Body, Sender};
use parley::pipeline::{sender, worker};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::harness::{Backends, Spawn, TestApp};

const OPT_OUTS: &[&str] = &[
    "STOP",
    "stop",
    "Stop.",
    "UNSUBSCRIBE",
    "Arrêt",
    "baja!",
    "STOPALL",
    "opt-out",
    "please stop messaging me",
    "Don't text me again",
];
const OPT_INS: &[&str] = &["START", "yes", "Unstop"];
const HELPS: &[&str] = &["HELP", "info"];
const OTHERS: &[&str] = &[
    "Hi",
    "What is the price of a 3 BHK?",
    "Stop by the office tomorrow?",
    "When does the offer end?",
    "Yes please, send the brochure",
    "Can I cancel my site visit and pick another day?",
];

#[derive(Debug, Clone)]
enum Step {
    Prospect(&'static str),
    StaffReply,
    Proactive { template: bool },
    ClockJump { minutes: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop::sample::select(OPT_OUTS).prop_map(Step::Prospect),
        2 => prop::sample::select(OPT_INS).prop_map(Step::Prospect),
        1 => prop::sample::select(HELPS).prop_map(Step::Prospect),
        3 => prop::sample::select(OTHERS).prop_map(Step::Prospect),
        2 => Just(Step::StaffReply),
        2 => any::<bool>().prop_map(|template| Step::Proactive { template }),
        2 => prop::sample::select(&[1_i64, 30, 300, 13 * 60, 25 * 60, 8 * 24 * 60][..])
            .prop_map(|minutes| Step::ClockJump { minutes }),
    ]
}

fn is_opt_out(text: &str) -> bool {
    OPT_OUTS.contains(&text)
}

fn is_opt_in(text: &str) -> bool {
    OPT_INS.contains(&text)
}

/// What the fake provider received for one recipient: (text or template name).
fn sends_to(app: &TestApp, wa_id: &str) -> Vec<String> {
    app.graph
        .sent_messages()
        .into_iter()
        .filter(|r| r.body["to"] == wa_id)
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .or(r.body["template"]["name"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

struct Harness {
    app: TestApp,
    clock: ManualClock,
    next_contact: AtomicU64,
    /// Distinguishes the four parallel SQLite runs' phone numbers.
    prefix: u64,
}

impl Harness {
    async fn start(backends: Backends, prefix: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("parley.toml");
        std::fs::write(
            &config,
            "[tenants.default.templates.offer]\nlanguage = \"en\"\nbody = \"A new offer for you, {{1}}\"\n",
        )
        .unwrap();
        let clock = ManualClock::new(1_795_000_000_000);
        let spawn = Spawn {
            background_tasks: false,
            ..Spawn::new(backends)
                .with_clock(Arc::new(clock.clone()))
                .with_env("PARLEY_CONFIG", &config.display().to_string())
        };
        let app = TestApp::start(spawn).await;
        // The config file is read at start-up only.
        drop(dir);
        Self {
            app,
            clock,
            next_contact: AtomicU64::new(0),
            prefix,
        }
    }

    fn state(&self) -> &AppState {
        &self.app.state
    }

    async fn deliver(&self) {
        sender::deliver_due(&self.app.state).await;
    }

    async fn run_case(&self, steps: Vec<Step>) -> Result<(), TestCaseError> {
        // Each case has its own contact; what the fake received for earlier cases is not needed.
        self.app.graph.clear();
        let n = self.next_contact.fetch_add(1, Ordering::Relaxed);
        let wa_id = format!("91{}{:08}", self.prefix, n);
        let tenant = TenantId::default_tenant();
        let conversation = ConversationId::derive(&tenant, Channel::Whatsapp, &wa_id);
        let confirmation = self.state().consent.policy(&tenant).opt_out_confirmation();
        let mut opted_out = false;
        let mut opt_outs = 0;
        for (i, step) in steps.iter().enumerate() {
            let before = sends_to(&self.app, &wa_id).len();
            let mut became_opted_out = false;
            match step {
                Step::Prospect(text) => {
                    if is_opt_out(text) && !opted_out {
                        became_opted_out = true;
                        opted_out = true;
                        opt_outs += 1;
                    } else if is_opt_in(text) && opted_out {
                        opted_out = false;
                    }
                    let now = self.state().clock.now_ms();
                    let message = InboundMessage {
                        tenant: tenant.clone(),
                        channel: Channel::Whatsapp,
                        provider_message_id: ProviderMessageId::parse(&format!(
                            "wamid.{wa_id}.{i}"
                        ))
                        .unwrap(),
                        sender: wa_id.clone(),
                        thread: wa_id.clone(),
                        sender_name: None,
                        sent_at_ms: now,
                        content: MessageContent::Text {
                            body: (*text).to_owned(),
                        },
                        context: None,
                        referral: None,
                    };
                    self.state()
                        .store
                        .record_inbound(&[message], &[], now)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    worker::process_conversation(self.state(), conversation)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                Step::StaffReply => {
                    let _ = compose::queue_message(
                        self.state(),
                        conversation,
                        Sender::Staff,
                        Body::Text("Priya from sales here".to_owned()),
                        false,
                    )
                    .await;
                }
                Step::Proactive { template } => {
                    let body = if *template {
                        Body::Template {
                            name: "offer".to_owned(),
                            params: vec!["Asha".to_owned()],
                        }
                    } else {
                        Body::Text("Limited launch offer this weekend".to_owned())
                    };
                    let _ = compose::queue_message(
                        self.state(),
                        conversation,
                        Sender::Automation,
                        body,
                        true,
                    )
                    .await;
                }
                Step::ClockJump { minutes } => self.clock.advance_ms(minutes * 60_000),
            }
            self.deliver().await;
            let sends = sends_to(&self.app, &wa_id);
            let new = &sends[before..];
            if became_opted_out {
                prop_assert_eq!(
                    new,
                    std::slice::from_ref(&confirmation),
                    "step {}: the opt-out must send its confirmation and nothing else",
                    i
                );
            } else if opted_out {
                prop_assert!(
                    new.is_empty(),
                    "step {} ({:?}): sent {:?} to an opted-out contact",
                    i,
                    step,
                    new
                );
            }
        }
        let confirmations = sends_to(&self.app, &wa_id)
            .iter()
            .filter(|s| **s == confirmation)
            .count();
        prop_assert_eq!(confirmations, opt_outs, "one confirmation per opt-out");
        Ok(())
    }
}

fn cases_total() -> u32 {
    std::env::var("PARLEY_CONSENT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn run(backends: Backends, prefix: u64, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let harness = runtime.block_on(Harness::start(backends, prefix));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec(step(), 1..12);
    let result = runner.run(&strategy, |steps| runtime.block_on(harness.run_case(steps)));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

macro_rules! sqlite_shards {
    ($($name:ident = $prefix:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(Backends::Embedded, $prefix, cases_total().div_ceil(4));
            }
        )*
    };
}

sqlite_shards!(
    no_message_reaches_an_opted_out_contact_sqlite_1 = 1,
    no_message_reaches_an_opted_out_contact_sqlite_2 = 2,
    no_message_reaches_an_opted_out_contact_sqlite_3 = 3,
    no_message_reaches_an_opted_out_contact_sqlite_4 = 4,
);

#[test]
fn no_message_reaches_an_opted_out_contact_postgres_redis() {
    let Some(backends) = Backends::servers() else {
        return;
    };
    run(backends, 5, (cases_total() / 10).max(1));
}
