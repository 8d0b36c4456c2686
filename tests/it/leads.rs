//! Leads and CRM sync: the lead store and CRM outbox on SQLite and PostgreSQL, CRM delivery
//! against the local fakes (outage, 429 with Retry-After, a refused record in a batch, opt-out
//! to Mautic's do-not-contact, hot-lead alerts), and the HTTP API. Time is a `ManualClock`:
//! retries become due by moving it, never by sleeping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use parley::app::{App, AppState, BuildOptions};
use parley::config::Config;
use parley::crm::worker::deliver_due;
use parley::domain::{Channel, ContactId, ManualClock, TenantId};
use parley::leads::{LeadFacts, LeadSource, Locate, MxResolver, MxStatus, Note, Tier};
use parley::testkit::fake_crm::{FakeCrm, Service};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common;

const ADMIN: &str = "leads-admin-token";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const START_MS: i64 = 1_800_000_000_000;
const APP_SECRET: &str = "leads-app-secret";

/// The application (HTTP served, no background tasks: the tests drive delivery) and its fakes.
struct LeadsApp {
    state: Arc<AppState>,
    clock: ManualClock,
    crm: FakeCrm,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for LeadsApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

async fn start(db: Db) -> Option<LeadsApp> {
    start_with(db, false).await
}

/// With `background_tasks`, the pipeline workers and the CRM worker run as in production.
async fn start_with(db: Db, background_tasks: bool) -> Option<LeadsApp> {
    start_env(db, background_tasks, Vec::new()).await
}

async fn start_env(
    db: Db,
    background_tasks: bool,
    extra_env: Vec<(&str, String)>,
) -> Option<LeadsApp> {
    let dir = tempfile::tempdir().unwrap();
    let crm = FakeCrm::start().await.unwrap();
    let toml = dir.path().join("parley.toml");
    std::fs::write(
        &toml,
        "[crm]\nmax_attempts = 30\nfirst_retry_ms = 1000\nmax_retry_ms = 60000\n",
    )
    .unwrap();
    let manifest = env!("CARGO_MANIFEST_DIR");
    let mut env: BTreeMap<String, String> = [
        ("PARLEY_DATA_DIR", dir.path().display().to_string()),
        ("PARLEY_PROMPTS_DIR", format!("{manifest}/prompts")),
        ("PARLEY_ADMIN_TOKEN", ADMIN.to_owned()),
        ("PARLEY_CONFIG", toml.display().to_string()),
        ("HUBSPOT_TOKEN", "pat-test".to_owned()),
        ("HUBSPOT_API_BASE", crm.base_url()),
        ("MAUTIC_URL", crm.mautic_url()),
        ("CRM_WEBHOOK_URL", crm.webhook_url()),
        ("CRM_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("SLACK_WEBHOOK_URL", crm.slack_url()),
        ("WHATSAPP_APP_SECRET", APP_SECRET.to_owned()),
        ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922".to_owned()),
        ("WHATSAPP_ACCESS_TOKEN", "wa-token".to_owned()),
        // Mark-read calls go nowhere (no sender runs in these tests).
        ("WHATSAPP_API_BASE", "http://127.0.0.1:9/v21.0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra_env {
        env.insert(k.to_owned(), v);
    }
    let clock = ManualClock::new(START_MS);
    let mut options = BuildOptions {
        clock: Arc::new(clock.clone()),
        background_tasks,
        mx_resolver: Some(MxResolver::fixed([
            ("example.com", MxStatus::Found),
            ("mailinator.com", MxStatus::Found),
        ])),
        ..BuildOptions::default()
    };
    if let Db::Postgres = db {
        env.insert("DATABASE_URL".into(), common::postgres_url()?);
        options.postgres_schema = Some(common::unique_name("it"));
    }
    let config = Config::from_sources(&env).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::build_with(config, listener, options).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    Some(LeadsApp {
        state,
        clock,
        crm,
        base,
        http: reqwest::Client::new(),
        shutdown,
        _dir: dir,
    })
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = super::start(super::Db::Sqlite).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(app) = super::start(super::Db::Postgres).await else { return };
                    super::$name(app).await;
                }
            )*
        }
    };
}

both_backends!(
    a_change_saves_history_and_jobs_and_a_stale_version_is_refused,
    leads_list_by_tier_and_score_and_dedupe_by_email_or_phone,
    a_crm_outage_loses_nothing_and_delivers_each_change_once_in_order,
    a_429_waits_for_its_retry_after,
    a_refused_record_in_a_batch_is_the_only_one_dead_lettered_and_can_be_replayed,
    an_opt_out_reaches_mautic_do_not_contact,
    a_hot_lead_alerts_sales_once_per_change,
    messages_fill_the_lead_card_and_the_api_explains_the_score,
    a_csv_import_reports_row_errors_and_merges_duplicates,
    a_click_to_whatsapp_ad_lead_has_its_source_phone_and_name,
    hubspot_batches_hold_at_most_100_inputs,
    a_multi_status_answer_dead_letters_only_the_records_it_names,
    a_worker_that_dies_mid_delivery_leaves_its_jobs_to_be_taken_again,
    a_contact_who_writes_after_an_import_joins_the_imported_lead,
    the_pipeline_starts_from_its_last_save_and_loses_no_change_made_elsewhere,
);

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

fn facts(email: &str, company: &str) -> LeadFacts {
    LeadFacts {
        first_name: Some("Asha".into()),
        last_name: Some("Rao".into()),
        email: Some(email.into()),
        company: Some(company.into()),
        ..Default::default()
    }
}

/// Writes or updates a lead with these facts (as an import would).
async fn put_lead(app: &LeadsApp, facts: &LeadFacts) -> parley::leads::LeadRecord {
    let locate = Locate::EmailOrPhone {
        email: facts.email.clone(),
        phone: facts.phone.clone(),
        source: LeadSource::Form,
    };
    app.state
        .leads
        .change(&tenant(), &locate, |lead| Note {
            reasons: app
                .state
                .leads
                .merge_facts(lead, facts)
                .into_iter()
                .collect(),
            ..Note::default()
        })
        .await
        .unwrap()
        .unwrap()
}

impl LeadsApp {
    /// GET with the admin token; the JSON body.
    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
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
}

/// Delivers until nothing is due, moving the clock past any retry delay (up to `rounds`).
async fn deliver_all(app: &LeadsApp, rounds: usize) {
    for _ in 0..rounds {
        deliver_due(&app.state.crm).await.unwrap();
        if app.state.store.crm_pending_count().await.unwrap() == 0 {
            return;
        }
        app.clock.advance_ms(61_000);
    }
}

async fn a_change_saves_history_and_jobs_and_a_stale_version_is_refused(app: LeadsApp) {
    let lead = put_lead(&app, &facts("asha@example.com", "Infosys")).await;
    assert_eq!(lead.version, 1);
    assert_eq!(lead.source, LeadSource::Form);
    let history = app.state.store.lead_history(lead.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].from_tier, None);
    assert!(
        history[0].reason.contains("learned"),
        "{}",
        history[0].reason
    );
    // One upsert per adapter that takes it: HubSpot, Mautic, webhook (Slack takes alerts only).
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 3);

    // A save built on version 1 after another change made version 2 is refused whole.
    let mut stale = lead.clone();
    let moved = put_lead(&app, &facts("asha@example.com", "Wipro")).await;
    assert_eq!(moved.version, 2);
    stale.version = 2;
    stale.facts.company = Some("Stale".into());
    let saved = app
        .state
        .store
        .save_lead_change(&parley::leads::LeadChange {
            lead: &stale,
            history: None,
            jobs: Vec::new(),
            // The pipeline's relaxed commit refuses a stale version just the same.
            relaxed: true,
        })
        .await
        .unwrap();
    assert!(!saved);
    let stored = app.state.store.lead(lead.id).await.unwrap().unwrap();
    assert_eq!(stored.facts.company.as_deref(), Some("Wipro"));
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 6);
    // Nothing changed: no version, no history, no job.
    let same = put_lead(&app, &facts("asha@example.com", "Wipro")).await;
    assert_eq!(same.version, 2);
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 6);
}

/// The pipeline's change (one per message) starts from the lead this replica saved last. A change
/// another replica made meanwhile, or a deletion, makes that save fail; the change is then applied
/// to the stored lead, and nothing is lost.
async fn the_pipeline_starts_from_its_last_save_and_loses_no_change_made_elsewhere(app: LeadsApp) {
    let here = &app.state.leads;
    // Another replica: the same store, nothing kept.
    let elsewhere = parley::leads::Leads {
        recent: parley::leads::RecentLeads::default(),
        ..here.clone()
    };
    let contact = ContactId::derive(&tenant(), Channel::Whatsapp, "919800000077");
    let locate = Locate::Contact {
        contact,
        source: LeadSource::WhatsappInbound,
        email: None,
        phone: None,
    };
    let replied = |lead: &mut parley::leads::LeadRecord| {
        lead.engagement.replies += 1;
        Note::default()
    };
    let first = here
        .change_relaxed(&tenant(), &locate, replied)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.version, first.engagement.replies), (1, 1));
    assert_eq!(here.recent.get(contact).map(|l| l.version), Some(1));

    // A change made by this replica starts from what it kept: the result is the same as reading.
    let second = here
        .change_relaxed(&tenant(), &locate, replied)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.version, second.engagement.replies), (2, 2));

    // Another replica changes the lead: what this one kept (version 2) is now stale.
    elsewhere
        .change(&tenant(), &Locate::Id(first.id), |lead| {
            lead.facts.company = Some("Elsewhere Ltd".into());
            Note::default()
        })
        .await
        .unwrap()
        .unwrap();
    let third = here
        .change_relaxed(&tenant(), &locate, replied)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.version, 4);
    let stored = app.state.store.lead(first.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 4);
    assert_eq!(
        stored.engagement.replies, 3,
        "this replica's change applied"
    );
    assert_eq!(
        stored.facts.company.as_deref(),
        Some("Elsewhere Ltd"),
        "the other replica's change kept"
    );
    assert_eq!(here.recent.get(contact).map(|l| l.version), Some(4));

    // The lead is deleted elsewhere: the next message makes a new lead instead of failing.
    for delete in [
        "DELETE FROM lead_history WHERE lead_id = $1",
        "DELETE FROM crm_outbox WHERE lead_id = $1",
        "DELETE FROM leads WHERE id = $1",
    ] {
        let id = first.id.to_string();
        match &app.state.store {
            parley::store::Store::Sqlite(pool) => {
                sqlx::query(delete).bind(id).execute(pool).await.unwrap();
            }
            parley::store::Store::Postgres(pool) => {
                sqlx::query(delete).bind(id).execute(pool).await.unwrap();
            }
        }
    }
    let fresh = here
        .change_relaxed(&tenant(), &locate, replied)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(fresh.id, first.id);
    assert_eq!((fresh.version, fresh.engagement.replies), (1, 1));
    assert!(app.state.store.lead(first.id).await.unwrap().is_none());
}

async fn leads_list_by_tier_and_score_and_dedupe_by_email_or_phone(app: LeadsApp) {
    let a = put_lead(&app, &facts("a@example.com", "A")).await;
    let mut with_phone = facts("b@example.com", "B");
    with_phone.phone = Some("+919876543210".into());
    let b = put_lead(&app, &with_phone).await;
    // Same phone, new email: the same lead.
    let same_phone = LeadFacts {
        phone: Some("+919876543210".into()),
        location: Some("Baner".into()),
        ..Default::default()
    };
    let b2 = put_lead(&app, &same_phone).await;
    assert_eq!(b2.id, b.id);
    assert!(b2.score > a.score);
    let store = &app.state.store;
    let all = store
        .list_leads(Some(&tenant()), None, parley::leads::LeadOrder::Score, 10)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|l| l.id).collect::<Vec<_>>(), [b.id, a.id]);
    let tier = all[0].tier;
    let of_tier = store
        .list_leads(None, Some(tier), parley::leads::LeadOrder::Score, 10)
        .await
        .unwrap();
    assert!(of_tier.iter().all(|l| l.tier == tier) && !of_tier.is_empty());
    let none = store
        .list_leads(None, Some(Tier::Hot), parley::leads::LeadOrder::Score, 10)
        .await
        .unwrap();
    assert!(none.is_empty());
    let found = store
        .lead_by_email_or_phone(&tenant(), Some("a@example.com"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a.id);
}

fn webhook_events(crm: &FakeCrm) -> Vec<Value> {
    crm.accepted(Service::Webhook)
        .into_iter()
        .map(|r| r.body)
        .collect()
}

async fn a_crm_outage_loses_nothing_and_delivers_each_change_once_in_order(app: LeadsApp) {
    app.crm.set_down(Some(503));
    let companies = ["One", "Two", "Three"];
    for i in 0..3 {
        for company in companies {
            put_lead(&app, &facts(&format!("lead{i}@example.com"), company)).await;
        }
    }
    let jobs = app.state.store.crm_pending_count().await.unwrap();
    assert_eq!(jobs, 27, "3 leads x 3 changes x 3 adapters");
    // A long outage: many rounds, all refused, nothing dead-lettered, nothing lost.
    for _ in 0..8 {
        deliver_due(&app.state.crm).await.unwrap();
        app.clock.advance_ms(61_000);
    }
    assert!(app.crm.requests().len() >= 8);
    assert!(app.crm.requests().iter().all(|r| !r.accepted));
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 27);
    assert!(
        app.state
            .store
            .crm_dead_letters(None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    app.crm.set_down(None);
    deliver_all(&app, 10).await;
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 0);

    // Webhook: every change once (distinct webhook-ids), each lead's in order.
    let events = webhook_events(&app.crm);
    assert_eq!(events.len(), 9);
    let ids: std::collections::HashSet<String> = app
        .crm
        .accepted(Service::Webhook)
        .iter()
        .map(|r| r.webhook_headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 9);
    // A redelivery carries the same webhook-id, so a receiver can drop the duplicate.
    let refused_ids: std::collections::HashSet<String> = app
        .crm
        .requests()
        .iter()
        .filter(|r| r.service == Service::Webhook && !r.accepted)
        .map(|r| r.webhook_headers["webhook-id"].clone())
        .collect();
    assert!(!refused_ids.is_empty() && refused_ids.is_subset(&ids));
    for i in 0..3 {
        let email = format!("lead{i}@example.com");
        let seen: Vec<&str> = events
            .iter()
            .filter(|e| e["data"]["email"] == email.as_str())
            .map(|e| e["data"]["company"].as_str().unwrap())
            .collect();
        assert_eq!(seen, companies, "{email}");
    }
    // HubSpot: each lead's three versions in order, by email.
    let mut hubspot: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in app.crm.accepted(Service::Hubspot) {
        for input in request.body["inputs"].as_array().unwrap() {
            assert_eq!(input["idProperty"], "email");
            hubspot
                .entry(input["id"].as_str().unwrap().to_owned())
                .or_default()
                .push(input["properties"]["company"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(hubspot.len(), 3);
    assert!(hubspot.values().all(|v| v == &companies));
    // Mautic: one contact per lead, created once then edited to the last value.
    let contacts = app.crm.mautic_contacts();
    assert_eq!(contacts.len(), 3);
    assert!(contacts.values().all(|c| c["company"] == "Three"));
    let creates = app
        .crm
        .accepted(Service::Mautic)
        .iter()
        .filter(|r| r.path == "/api/contacts/new")
        .count();
    assert_eq!(creates, 3);
}

async fn a_429_waits_for_its_retry_after(app: LeadsApp) {
    // Only the webhook, to count one service's attempts.
    let lead = put_lead(&app, &facts("rate@example.com", "Acme")).await;
    app.crm.fail_next(429, Some(120));
    deliver_due(&app.state.crm).await.unwrap();
    let first_round = app.crm.requests().len();
    let refused: Vec<_> = app
        .crm
        .requests()
        .into_iter()
        .filter(|r| !r.accepted)
        .collect();
    assert_eq!(refused.len(), 1);
    let service = refused[0].service;
    // Backoff alone would retry after about a second; Retry-After says 120 s.
    app.clock.advance_ms(60_000);
    deliver_due(&app.state.crm).await.unwrap();
    assert_eq!(
        app.crm.requests().len(),
        first_round,
        "not retried before Retry-After"
    );
    app.clock.advance_ms(61_000);
    deliver_due(&app.state.crm).await.unwrap();
    assert_eq!(app.crm.accepted(service).len(), 1);
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 0);
    let _ = lead;
}

async fn a_refused_record_in_a_batch_is_the_only_one_dead_lettered_and_can_be_replayed(
    app: LeadsApp,
) {
    app.crm.reject_email("bad@example.com");
    let good1 = put_lead(&app, &facts("good1@example.com", "A")).await;
    let bad = put_lead(&app, &facts("bad@example.com", "B")).await;
    let good2 = put_lead(&app, &facts("good2@example.com", "C")).await;
    deliver_all(&app, 5).await;
    let hubspot = app.crm.requests();
    let batch = hubspot
        .iter()
        .find(|r| r.service == Service::Hubspot)
        .unwrap();
    assert_eq!(
        batch.body["inputs"].as_array().unwrap().len(),
        3,
        "one batch first"
    );
    assert!(!batch.accepted);
    let upserted: Vec<String> = app
        .crm
        .accepted(Service::Hubspot)
        .iter()
        .flat_map(|r| r.body["inputs"].as_array().unwrap().clone())
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(upserted, ["good1@example.com", "good2@example.com"]);
    let dead = app.state.store.crm_dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].lead_id, bad.id.to_string());
    assert_eq!(dead[0].adapter, "hubspot");
    assert!(dead[0].last_error.as_deref().unwrap().contains("400"));
    // Mautic and the webhook took all three.
    assert_eq!(app.crm.mautic_contacts().len(), 3);
    assert!(
        app.state
            .store
            .crm_mapping(
                &tenant(),
                &good1.id.to_string(),
                parley::crm::AdapterKind::Hubspot
            )
            .await
            .unwrap()
            .is_some()
    );
    let _ = good2;

    // Over HTTP: the dead letter is listed, replayed, and (the CRM fixed) delivered.
    let listed: Value = app.get("/api/v1/crm/dead-letters").await;
    assert_eq!(listed["dead_letters"][0]["id"], dead[0].id.as_str());
    let response = app
        .http
        .post(format!(
            "{}/api/v1/crm/dead-letters/{}/retry",
            app.base, dead[0].id
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let again = app
        .http
        .post(format!(
            "{}/api/v1/crm/dead-letters/{}/retry",
            app.base, dead[0].id
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a pending job is not a dead letter");
    let unauthenticated = app
        .http
        .get(format!("{}/api/v1/crm/dead-letters", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    deliver_all(&app, 5).await;
    // Still refused (the email is still rejected): dead again, not lost.
    assert_eq!(
        app.state
            .store
            .crm_dead_letters(None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn an_opt_out_reaches_mautic_do_not_contact(app: LeadsApp) {
    let contact = ContactId::derive(&tenant(), Channel::Whatsapp, "919876543210");
    let locate = Locate::Contact {
        contact,
        source: LeadSource::WhatsappInbound,
        email: None,
        phone: Some("+919876543210".into()),
    };
    let f = facts("optout@example.com", "Acme");
    app.state
        .leads
        .change(&tenant(), &locate, |lead| {
            app.state.leads.merge_facts(lead, &f);
            Default::default()
        })
        .await
        .unwrap();
    deliver_all(&app, 3).await;
    let contacts = app.crm.mautic_contacts();
    assert_eq!(contacts.len(), 1);
    let mautic_id = *contacts.keys().next().unwrap();

    parley::crm::on_opt_out(&app.state, &tenant(), contact, Channel::Whatsapp).await;
    // A second opt-out changes nothing and sends nothing more.
    parley::crm::on_opt_out(&app.state, &tenant(), contact, Channel::Whatsapp).await;
    deliver_all(&app, 3).await;
    assert_eq!(app.crm.mautic_dnc(), [(mautic_id, "sms".to_owned())]);
    let dnc = app
        .crm
        .accepted(Service::Mautic)
        .into_iter()
        .find(|r| r.path.contains("/dnc/"))
        .unwrap();
    assert_eq!(dnc.body["reason"], 1);
    assert!(dnc.authorization.unwrap().starts_with("Basic "));
    let events = webhook_events(&app.crm);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "lead.opted_out")
            .count(),
        1
    );
    let lead = app
        .state
        .store
        .lead_by_contact(contact)
        .await
        .unwrap()
        .unwrap();
    assert!(lead.opted_out);
    let history = app.state.store.lead_history(lead.id).await.unwrap();
    assert_eq!(history.last().unwrap().reason, "opted out on whatsapp");
}

async fn a_hot_lead_alerts_sales_once_per_change(app: LeadsApp) {
    let contact = ContactId::derive(&tenant(), Channel::Web, "visitor-hot");
    let locate = Locate::Contact {
        contact,
        source: LeadSource::Web,
        email: None,
        phone: None,
    };
    let f = facts("hot@example.com", "Acme");
    // A visit request moves the lead to hot.
    for _ in 0..2 {
        app.state
            .leads
            .change(&tenant(), &locate, |lead| {
                app.state.leads.merge_facts(lead, &f);
                lead.engagement.replies += 1;
                lead.engagement.visit_requests += 1;
                lead.engagement.last_at = Some(app.clock.now_ms_for_tests());
                Default::default()
            })
            .await
            .unwrap();
    }
    deliver_all(&app, 3).await;
    let lead = app
        .state
        .store
        .lead_by_contact(contact)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.tier, Tier::Hot);
    let slack = app.crm.accepted(Service::Slack);
    assert_eq!(slack.len(), 1, "one alert: the lead turned hot once");
    assert!(
        slack[0].body["text"]
            .as_str()
            .unwrap()
            .contains("Hot lead: Asha Rao")
    );
    let tasks: Vec<_> = app
        .crm
        .accepted(Service::Hubspot)
        .into_iter()
        .filter(|r| r.path == "/crm/v3/objects/tasks")
        .collect();
    assert_eq!(tasks.len(), 1);
    let contact_id = app
        .state
        .store
        .crm_mapping(
            &tenant(),
            &lead.id.to_string(),
            parley::crm::AdapterKind::Hubspot,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tasks[0].body["associations"][0]["to"]["id"],
        contact_id.as_str()
    );
    assert_eq!(tasks[0].body["properties"]["hs_task_priority"], "HIGH");
    let hot_events = webhook_events(&app.crm)
        .into_iter()
        .filter(|e| e["type"] == "lead.hot")
        .count();
    assert_eq!(hot_events, 1);
    // The webhook is signed with the configured secret over the exact body.
    let request = &app.crm.accepted(Service::Webhook)[0];
    let key = base64::engine::general_purpose::STANDARD
        .decode(WEBHOOK_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let expected = parley::crm::webhook::sign(
        &key,
        &request.webhook_headers["webhook-id"],
        request.webhook_headers["webhook-timestamp"]
            .parse()
            .unwrap(),
        request.raw_body.as_bytes(),
    );
    assert_eq!(request.webhook_headers["webhook-signature"], expected);
    let history = app.state.store.lead_history(lead.id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.to_tier == Tier::Hot && h.reason.contains("meeting request")),
        "{history:?}"
    );
}

trait NowForTests {
    fn now_ms_for_tests(&self) -> i64;
}
impl NowForTests for ManualClock {
    fn now_ms_for_tests(&self) -> i64 {
        use parley::domain::Clock;
        self.now_ms()
    }
}

async fn messages_fill_the_lead_card_and_the_api_explains_the_score(app: LeadsApp) {
    // Messages through the real pipeline, handled by a worker round.
    let visitor = "visitor-card";
    for text in [
        "Hi, my name is Asha Rao, email asha.rao@example.com",
        "budget 1.5 cr hai, 3 BHK in Baner",
        "what is the price?",
    ] {
        let response = app
            .http
            .post(format!("{}/api/v1/web/messages", app.base))
            .json(&serde_json::json!({"tenant": "default", "visitor_id": visitor, "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        let conversation =
            parley::domain::ConversationId::parse(body["conversation_id"].as_str().unwrap())
                .unwrap();
        parley::pipeline::worker::process_conversation(&app.state, conversation)
            .await
            .unwrap();
    }
    // The email check runs off the message's path.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let lead = loop {
        let leads = app.get("/api/v1/leads?sort=score").await;
        let lead = leads["leads"][0].clone();
        if lead["verification"]["email"] == "verified" || tokio::time::Instant::now() > deadline {
            break lead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lead["contact"]["name"], "Asha Rao");
    assert_eq!(lead["contact"]["email"], "asha.rao@example.com");
    assert_eq!(lead["facts"]["budget"]["amount"], 15_000_000);
    assert_eq!(lead["facts"]["budget"]["currency"], "INR");
    assert_eq!(lead["facts"]["property_type"], "3 BHK");
    assert_eq!(lead["facts"]["location"], "Baner");
    assert_eq!(lead["source"], "web");
    assert_eq!(lead["engagement"]["replies"], 3);
    assert!(lead["engagement"]["pricing_questions"].as_u64().unwrap() >= 1);
    assert_eq!(lead["verification"]["email"], "verified");
    let factors = lead["factors"].as_array().unwrap();
    let sum: i64 = factors.iter().map(|f| f["points"].as_i64().unwrap()).sum();
    assert_eq!(sum, lead["score"].as_i64().unwrap());
    let names: Vec<&str> = factors
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "completeness",
            "verification",
            "source",
            "engagement",
            "recency"
        ]
    );
    assert!(
        factors
            .iter()
            .all(|f| f["detail"].as_str().is_some_and(|d| !d.is_empty()))
    );
    // 3 engagements: at least warm.
    assert!(
        ["warm", "hot"].contains(&lead["tier"].as_str().unwrap()),
        "{lead:#}"
    );

    let one: Value = app
        .http
        .get(format!(
            "{}/api/v1/leads/{}",
            app.base,
            lead["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history = one["history"].as_array().unwrap();
    assert!(history.len() >= 3, "{one:#}");
    assert!(
        history
            .iter()
            .all(|h| !h["reason"].as_str().unwrap().is_empty())
    );

    // The tier filter and bad parameters.
    let filtered: Value = app.get("/api/v1/leads?tier=invalid").await;
    assert_eq!(filtered["leads"].as_array().unwrap().len(), 0);
    let bad = app
        .http
        .get(format!("{}/api/v1/leads?tier=boiling", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"], "bad_request");

    // Thirty silent days later the review moves it down one tier, with the reason.
    let before = lead["tier"].as_str().unwrap().to_owned();
    app.clock.advance_ms(31 * 24 * 60 * 60 * 1000);
    app.state.leads.review_due().await.unwrap();
    let after = app
        .state
        .store
        .lead(parley::leads::LeadId::parse(lead["id"].as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        after.tier < Tier::parse(&before).unwrap(),
        "{:?} after {before}",
        after.tier
    );
    let history = app.state.store.lead_history(after.id).await.unwrap();
    assert!(
        history
            .last()
            .unwrap()
            .reason
            .contains("days without engagement"),
        "{history:?}"
    );
}

async fn a_csv_import_reports_row_errors_and_merges_duplicates(app: LeadsApp) {
    let csv = "name,email,phone,company,budget,source\n\
               Asha Rao,asha@example.com,9876543210,Infosys,1.5 cr,form\n\
               Ravi Kumar,not-an-email,,Wipro,,\n\
               Asha R,ASHA@example.com,,Infosys Ltd,,\n\
               Meena Iyer,,+91 98200 12345,,80 lakh,event\n\
               No Contact,,,Acme,,\n\
               Bad Source,bad.source@example.com,,,,billboard\n";
    let response = app
        .http
        .post(format!("{}/api/v1/leads/import", app.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status: Value = app.get(&format!("/api/v1/leads/import/{job_id}")).await;
        if status["status"] != "running" || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["status"], "done", "{status:#}");
    assert_eq!(status["total_rows"], 6);
    assert_eq!(status["created"], 2);
    assert_eq!(status["merged"], 1);
    let errors: Vec<(u64, String)> = status["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0], (3, "email is not a valid address".to_owned()));
    assert_eq!(errors[1], (6, "a row needs an email or a phone".to_owned()));
    assert_eq!(errors[2].0, 7);
    assert!(errors[2].1.contains("billboard"));
    let asha = app
        .state
        .store
        .lead_by_email_or_phone(&tenant(), Some("asha@example.com"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(asha.facts.company.as_deref(), Some("Infosys Ltd"));
    assert_eq!(asha.facts.phone.as_deref(), Some("+919876543210"));
    assert_eq!(asha.source, LeadSource::Form);
    assert_eq!(asha.facts.budget.as_ref().unwrap().amount, 15_000_000);
    let meena = app
        .state
        .store
        .lead_by_email_or_phone(&tenant(), None, Some("+919820012345"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meena.source, LeadSource::Event);
    // Empty bodies are refused at once.
    let empty = app
        .http
        .post(format!("{}/api/v1/leads/import", app.base))
        .bearer_auth(ADMIN)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
}

async fn a_click_to_whatsapp_ad_lead_has_its_source_phone_and_name(app: LeadsApp) {
    let body = std::fs::read(format!(
        "{}/tests/fixtures/meta_doc_text_click_to_whatsapp_ad_referral.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp", app.base))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            parley::channels::whatsapp::sign(APP_SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let conversation =
        parley::domain::ConversationId::derive(&tenant(), Channel::Whatsapp, "16505551234");
    parley::pipeline::worker::process_conversation(&app.state, conversation)
        .await
        .unwrap();
    let contact = ContactId::derive(&tenant(), Channel::Whatsapp, "16505551234");
    let lead = app
        .state
        .store
        .lead_by_contact(contact)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.source, LeadSource::ReferralAd);
    assert_eq!(lead.facts.phone.as_deref(), Some("+16505551234"));
    assert_eq!(lead.facts.full_name().as_deref(), Some("Sheena Nelson"));
    let source = lead.factors.iter().find(|f| f.name == "source").unwrap();
    assert_eq!(source.points, 15);
    assert_eq!(lead.engagement.replies, 1);
}

async fn hubspot_batches_hold_at_most_100_inputs(app: LeadsApp) {
    for i in 0..130 {
        put_lead(&app, &facts(&format!("bulk{i}@example.com"), "Bulk")).await;
    }
    deliver_all(&app, 5).await;
    let batches = app.crm.accepted(Service::Hubspot);
    let sizes: Vec<usize> = batches
        .iter()
        .map(|r| r.body["inputs"].as_array().unwrap().len())
        .collect();
    assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
    assert!(sizes.contains(&100), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 130);
    assert!(
        batches
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer pat-test"))
    );
}

async fn the_demo_chat_reaches_every_crm_once_per_change(db: Db) {
    let Some(app) = start_with(db, true).await else {
        return;
    };
    for text in [
        "Hi, my name is Asha Rao, asha.rao@example.com",
        "I want to book a 3 BHK in Baner, can we do a site visit on Saturday?",
    ] {
        let response = app
            .http
            .post(format!("{}/api/v1/web/messages", app.base))
            .json(&serde_json::json!({"tenant": "default", "visitor_id": "visitor-demo", "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    // The pipeline workers and the CRM worker run on their own; wait for the hot alert.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.crm.accepted(Service::Slack).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no hot-lead alert: {:#?}",
            app.crm.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while app.state.store.crm_pending_count().await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "CRM jobs left pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leads = app.get("/api/v1/leads?tier=hot").await;
    assert_eq!(leads["leads"].as_array().unwrap().len(), 1, "{leads:#}");
    assert_eq!(app.crm.accepted(Service::Slack).len(), 1);
    let events = webhook_events(&app.crm);
    assert_eq!(events.iter().filter(|e| e["type"] == "lead.hot").count(), 1);
    let ids: std::collections::HashSet<String> = app
        .crm
        .accepted(Service::Webhook)
        .iter()
        .map(|r| r.webhook_headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), events.len(), "each change once");
    let upserted: Vec<String> = app
        .crm
        .accepted(Service::Hubspot)
        .iter()
        .flat_map(|r| r.body["inputs"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    assert!(upserted.iter().all(|e| e == "asha.rao@example.com") && !upserted.is_empty());
    let contacts = app.crm.mautic_contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts.values().next().unwrap()["email"],
        "asha.rao@example.com"
    );
}

#[tokio::test]
async fn the_demo_chat_reaches_every_crm_once_per_change_on_sqlite() {
    the_demo_chat_reaches_every_crm_once_per_change(Db::Sqlite).await;
}

#[tokio::test]
async fn the_demo_chat_reaches_every_crm_once_per_change_on_postgres() {
    the_demo_chat_reaches_every_crm_once_per_change(Db::Postgres).await;
}

async fn a_multi_status_answer_dead_letters_only_the_records_it_names(app: LeadsApp) {
    app.crm.use_multi_status();
    app.crm.reject_email("bad@example.com");
    for email in ["ok1@example.com", "bad@example.com", "ok2@example.com"] {
        put_lead(&app, &facts(email, "Acme")).await;
    }
    deliver_all(&app, 5).await;
    let batches: Vec<_> = app
        .crm
        .requests()
        .into_iter()
        .filter(|r| r.service == Service::Hubspot)
        .collect();
    assert_eq!(batches.len(), 1, "a 207 is not split and not retried");
    let dead = app.state.store.crm_dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].adapter, "hubspot");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("VALIDATION_ERROR")
    );
    assert!(
        !dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("bad@example.com")
    );
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 0);
}

async fn with_an_llm_the_lead_gets_the_facts_the_model_found(db: Db) {
    use parley::testkit::fake_openai::{FakeOpenAi, ScriptedReply};
    let llm = FakeOpenAi::start().await;
    llm.set_reply_for_schema(
        "lead_facts",
        ScriptedReply::json(serde_json::json!({
            "first_name": "Kiran", "last_name": "Desai", "email": null, "phone": null,
            "company": "Skyline Infra", "timeline": null, "location": null,
            "property_type": null, "budget_amount": 25000000, "budget_currency": "INR",
            "keywords": ["investment"], "pricing_question": false, "visit_request": false,
            "purchase_inquiry": false
        })),
    );
    let Some(app) = start_env(
        db,
        false,
        vec![
            ("OPENAI_API_KEY", "sk-test".to_owned()),
            ("OPENAI_BASE_URL", llm.base_url()),
        ],
    )
    .await
    else {
        return;
    };
    let text = "hello, Kiran here from the big infra firm, thinking of putting two and a half crore somewhere";
    let response = app
        .http
        .post(format!("{}/api/v1/web/messages", app.base))
        .json(&serde_json::json!({"tenant": "default", "visitor_id": "visitor-llm", "text": text}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let conversation =
        parley::domain::ConversationId::parse(body["conversation_id"].as_str().unwrap()).unwrap();
    parley::pipeline::worker::process_conversation(&app.state, conversation)
        .await
        .unwrap();
    let contact = ContactId::derive(&tenant(), Channel::Web, "visitor-llm");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let lead = loop {
        let lead = app
            .state
            .store
            .lead_by_contact(contact)
            .await
            .unwrap()
            .unwrap();
        if lead.facts.company.is_some() || tokio::time::Instant::now() > deadline {
            break lead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lead.facts.company.as_deref(), Some("Skyline Infra"));
    assert_eq!(lead.facts.full_name().as_deref(), Some("Kiran Desai"));
    assert_eq!(lead.facts.budget.as_ref().unwrap().amount, 25_000_000);
    let extraction = llm
        .requests()
        .into_iter()
        .find(|r| r.body["response_format"]["json_schema"]["name"] == "lead_facts")
        .expect("a lead-facts request");
    assert_eq!(extraction.body["messages"][1]["content"], text);
    let history = app.state.store.lead_history(lead.id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.reason.contains("learned") && h.reason.contains("company")),
        "{history:?}"
    );
}

#[tokio::test]
async fn with_an_llm_the_lead_gets_the_facts_the_model_found_on_sqlite() {
    with_an_llm_the_lead_gets_the_facts_the_model_found(Db::Sqlite).await;
}

#[tokio::test]
async fn with_an_llm_the_lead_gets_the_facts_the_model_found_on_postgres() {
    with_an_llm_the_lead_gets_the_facts_the_model_found(Db::Postgres).await;
}

async fn a_worker_that_dies_mid_delivery_leaves_its_jobs_to_be_taken_again(app: LeadsApp) {
    put_lead(&app, &facts("lease@example.com", "Acme")).await;
    // A worker claims the jobs and dies before recording anything.
    let claimed = app
        .state
        .store
        .claim_crm_jobs(app.clock.now_ms_for_tests(), 60_000, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    deliver_due(&app.state.crm).await.unwrap();
    assert!(
        app.crm.requests().is_empty(),
        "claimed jobs wait for their lease"
    );
    app.clock.advance_ms(60_001);
    deliver_due(&app.state.crm).await.unwrap();
    assert_eq!(app.crm.accepted(Service::Hubspot).len(), 1);
    assert_eq!(app.crm.accepted(Service::Mautic).len(), 1);
    assert_eq!(app.crm.accepted(Service::Webhook).len(), 1);
    assert_eq!(app.state.store.crm_pending_count().await.unwrap(), 0);
}

async fn a_contact_who_writes_after_an_import_joins_the_imported_lead(app: LeadsApp) {
    let imported = put_lead(
        &app,
        &LeadFacts {
            phone: Some("+16505551234".into()),
            company: Some("Imported Co".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(imported.contact_id, None);
    let body = whatsapp_fixture();
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp", app.base))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            parley::channels::whatsapp::sign(APP_SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let conversation =
        parley::domain::ConversationId::derive(&tenant(), Channel::Whatsapp, "16505551234");
    parley::pipeline::worker::process_conversation(&app.state, conversation)
        .await
        .unwrap();
    let contact = ContactId::derive(&tenant(), Channel::Whatsapp, "16505551234");
    let lead = app
        .state
        .store
        .lead_by_contact(contact)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.id, imported.id, "one lead, not two");
    assert_eq!(lead.facts.company.as_deref(), Some("Imported Co"));
    assert_eq!(lead.source, LeadSource::Form, "the better source is kept");
    assert_eq!(lead.engagement.replies, 1);
    let all = app
        .state
        .store
        .list_leads(None, None, parley::leads::LeadOrder::Recent, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

fn whatsapp_fixture() -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/meta_doc_text_click_to_whatsapp_ad_referral.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}
