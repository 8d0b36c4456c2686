//! CRM sync through a transactional outbox. Every lead change that a CRM should see writes one
//! job per configured adapter in the transaction that saves the change (`leads::store`); the
//! worker (`worker`) claims due jobs (the oldest pending one per lead and adapter, so each lead's
//! changes arrive in order), delivers them, and records the outcome: delivered, retried with
//! exponential backoff and jitter (a longer `Retry-After` wins), or dead-lettered after
//! `crm.max_attempts` (kept, listed and replayable through the API).
//!
//! Adapters: HubSpot (batch upsert by email, a task for a hot lead), Mautic (create or edit, and
//! do-not-contact on opt-out), a generic webhook signed the Standard Webhooks way, and Slack (a
//! message to sales for a hot lead). `crm_mappings` keeps each CRM's id for a lead, so updates
//! edit the same record; every delivery is idempotent (upsert by email, edit by id, a stable
//! `webhook-id`).

pub mod config;
mod deliver;
pub mod hubspot;
pub mod mautic;
mod payload;
pub mod slack;
mod store;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

pub use config::{CrmConfig, CrmFile, TenantCrm};
pub use payload::LeadSnapshot;
pub use store::{DeadLetter, SyncJob};

use crate::app::AppState;
use crate::domain::{Channel, Clock, ContactId, TenantId};
use crate::leads::LeadRecord;
use crate::store::Store;

/// A CRM (or alert) integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    Hubspot,
    Mautic,
    Webhook,
    Slack,
}

impl AdapterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Hubspot => "hubspot",
            AdapterKind::Mautic => "mautic",
            AdapterKind::Webhook => "webhook",
            AdapterKind::Slack => "slack",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            AdapterKind::Hubspot,
            AdapterKind::Mautic,
            AdapterKind::Webhook,
            AdapterKind::Slack,
        ]
        .into_iter()
        .find(|a| a.as_str() == raw)
    }

    /// Whether this adapter takes this kind of job for this lead.
    fn accepts(self, kind: JobKind, lead: &LeadRecord) -> bool {
        match (self, kind) {
            // HubSpot upserts by email: a lead without one cannot be matched, so it waits.
            (AdapterKind::Hubspot, JobKind::Upsert | JobKind::HotAlert) => {
                lead.facts.email.is_some()
            }
            (AdapterKind::Hubspot, JobKind::OptOut) => false,
            (AdapterKind::Mautic, JobKind::Upsert | JobKind::OptOut) => true,
            (AdapterKind::Mautic, JobKind::HotAlert) => false,
            (AdapterKind::Webhook, _) => true,
            (AdapterKind::Slack, JobKind::HotAlert) => true,
            (AdapterKind::Slack, _) => false,
        }
    }
}

/// What a job asks the CRM to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Create or update the contact with the lead's current facts and score.
    Upsert,
    /// The lead turned hot: a task for sales (HubSpot), an event (webhook), a message (Slack).
    HotAlert,
    /// The contact opted out: do-not-contact (Mautic), an event (webhook).
    OptOut,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Upsert => "upsert",
            JobKind::HotAlert => "hot_alert",
            JobKind::OptOut => "opt_out",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [JobKind::Upsert, JobKind::HotAlert, JobKind::OptOut]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

/// A job to write to the outbox with a lead change.
#[derive(Debug, Clone)]
pub struct NewSyncJob {
    pub id: Uuid,
    pub adapter: AdapterKind,
    pub kind: JobKind,
    /// The lead snapshot (JSON) the CRM receives.
    pub payload: String,
}

/// The CRM side of the application: settings, the HTTP client, and the worker's wake-up.
#[derive(Debug, Clone)]
pub struct Crm {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<CrmConfig>,
    pub http: reqwest::Client,
    /// Wakes the worker when a job was written.
    pub wakeup: Arc<Notify>,
}

impl Crm {
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: CrmConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .unwrap_or_default();
        Self {
            store,
            clock,
            config: Arc::new(config),
            http,
            wakeup: Arc::new(Notify::new()),
        }
    }

    /// The jobs a lead change produces: one per adapter that takes each kind.
    pub fn jobs_for(
        &self,
        lead: &LeadRecord,
        kinds: &[JobKind],
        channel: Option<Channel>,
    ) -> Vec<NewSyncJob> {
        let Some(tenant) = self.config.tenant(&lead.tenant) else {
            return Vec::new();
        };
        let adapters = tenant.adapters();
        if adapters.is_empty() {
            return Vec::new();
        }
        let snapshot = LeadSnapshot::of(lead, channel);
        let Ok(payload) = serde_json::to_string(&snapshot) else {
            return Vec::new();
        };
        let mut jobs = Vec::new();
        for kind in kinds {
            for adapter in &adapters {
                if adapter.accepts(*kind, lead) {
                    jobs.push(NewSyncJob {
                        id: Uuid::now_v7(),
                        adapter: *adapter,
                        kind: *kind,
                        payload: payload.clone(),
                    });
                }
            }
        }
        jobs
    }
}

/// Called by the consent module when a contact opts out: marks the lead opted out and enqueues
/// the do-not-contact sync (Mautic) and the opt-out event (webhook). Errors are logged; a contact
/// without a lead yet gets one, so the opt-out is never lost.
pub async fn on_opt_out(state: &AppState, tenant: &TenantId, contact: ContactId, channel: Channel) {
    if let Err(err) = state.leads.opt_out(tenant, contact, channel).await {
        tracing::error!(contact.id = %contact, error = %err, "could not record an opt-out for the CRM");
    }
}
