//! Consent and deliverability: STOP/START/HELP recognition (`keywords`), the append-only ledger
//! (`ledger`, stored by `store::consent`), the outbound policy (`policy`: opt-out, the WhatsApp
//! 24-hour window, quiet hours, frequency caps) and the one gate every outbound message passes,
//! when it is queued and again right before the provider call (`Consent::gate`).

mod keywords;
mod ledger;
mod policy;
mod settings;
mod zone;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use secrecy::SecretString;

pub use keywords::{ConsentCommand, ConsentVocabulary, MatchKind, normalise};
pub use ledger::{ConsentAction, ConsentEvent, ConsentSource, NewConsentEvent, SubjectKey};
pub use policy::{
    ContactFacts, GateDecision, GateReason, Outgoing, Purpose, SERVICE_WINDOW_MS, decide,
    has_service_window, quiet_hours_end,
};
pub use settings::{ConsentSettings, QuietHours, TemplateSettings, parse_clock_time};
pub use zone::contact_zone;

use crate::config::Config;
use crate::domain::{Channel, ContactId, TenantId};
use crate::store::{GateFactsQuery, Store, StoreError};

/// A tenant's consent policy, prepared once.
#[derive(Debug)]
pub struct TenantPolicy {
    pub settings: ConsentSettings,
    pub vocabulary: ConsentVocabulary,
    pub zone: TimeZone,
    pub templates: BTreeMap<String, TemplateSettings>,
    /// The business name the fixed texts use.
    pub business: String,
}

impl TenantPolicy {
    fn new(
        settings: ConsentSettings,
        templates: BTreeMap<String, TemplateSettings>,
        business: String,
    ) -> Self {
        let zone = TimeZone::get(&settings.time_zone).unwrap_or(TimeZone::UTC);
        Self {
            vocabulary: ConsentVocabulary::new(&settings),
            settings,
            zone,
            templates,
            business,
        }
    }

    fn fill(&self, text: &str) -> String {
        let opt_in = self
            .settings
            .opt_in_keywords
            .first()
            .map(|k| k.to_uppercase())
            .unwrap_or_else(|| "START".to_owned());
        text.replace("{business}", &self.business)
            .replace("{opt_in}", &opt_in)
    }

    /// The one confirmation an opt-out gets.
    pub fn opt_out_confirmation(&self) -> String {
        self.fill(&self.settings.opt_out_confirmation)
    }

    pub fn opt_in_confirmation(&self) -> String {
        self.fill(&self.settings.opt_in_confirmation)
    }

    pub fn help_text(&self) -> String {
        self.fill(&self.settings.help_text)
    }
}

/// What is about to be sent, to whom, for the gate.
#[derive(Debug, Clone, Copy)]
pub struct GateRequest<'a> {
    pub tenant: &'a TenantId,
    pub contact: ContactId,
    pub channel: Channel,
    pub address: &'a str,
    pub purpose: Purpose,
    pub template: bool,
}

/// Consent for every tenant: the ledger, the policies and the gate.
#[derive(Debug, Clone)]
pub struct Consent {
    store: Store,
    key: SubjectKey,
    policies: Arc<BTreeMap<TenantId, Arc<TenantPolicy>>>,
    fallback: Arc<TenantPolicy>,
}

impl Consent {
    /// Prepares every tenant's policy and the ledger key: `PARLEY_CONSENT_KEY` when set, otherwise
    /// a key generated once and kept in the database (shared by every replica).
    pub async fn open(store: Store, config: &Config) -> Result<Self, StoreError> {
        let key = match &config.consent_key {
            Some(key) => key.clone(),
            None => {
                let generated = hex::encode(rand::random::<[u8; 32]>());
                SecretString::from(
                    store
                        .secret_value("consent_subject_key", &generated)
                        .await?,
                )
            }
        };
        let policies = config
            .tenants
            .values()
            .map(|t| {
                (
                    t.id.clone(),
                    Arc::new(TenantPolicy::new(
                        t.consent.clone(),
                        t.templates.clone(),
                        t.name.clone(),
                    )),
                )
            })
            .collect();
        Ok(Self {
            store,
            key: SubjectKey::new(key),
            policies: Arc::new(policies),
            fallback: Arc::new(TenantPolicy::new(
                ConsentSettings::default(),
                BTreeMap::new(),
                "us".to_owned(),
            )),
        })
    }

    /// The tenant's policy (the defaults for a tenant that is no longer configured).
    pub fn policy(&self, tenant: &TenantId) -> &Arc<TenantPolicy> {
        self.policies.get(tenant).unwrap_or(&self.fallback)
    }

    /// The contact's name in the ledger.
    pub fn subject(&self, tenant: &TenantId, contact: ContactId) -> String {
        self.key.subject(tenant, contact)
    }

    /// Whether the contact has opted out of the channel.
    pub async fn is_opted_out(
        &self,
        tenant: &TenantId,
        contact: ContactId,
        channel: Channel,
    ) -> Result<bool, StoreError> {
        let subject = self.subject(tenant, contact);
        Ok(self.store.latest_consent(tenant, &subject, channel).await?
            == Some(ConsentAction::OptOut))
    }

    /// Appends an event to the ledger.
    pub async fn record(&self, event: &NewConsentEvent) -> Result<(), StoreError> {
        let subject = self.subject(&event.tenant, event.contact);
        self.store.append_consent(&subject, event).await
    }

    /// The contact's full consent history, oldest first.
    pub async fn history(
        &self,
        tenant: &TenantId,
        contact: ContactId,
    ) -> Result<Vec<ConsentEvent>, StoreError> {
        self.store
            .consent_history(tenant, &self.subject(tenant, contact))
            .await
    }

    /// The gate: loads what is known about the recipient and decides. Every outbound message
    /// passes here when it is queued and again right before the provider call.
    pub async fn gate(
        &self,
        request: GateRequest<'_>,
        now_ms: i64,
    ) -> Result<GateDecision, StoreError> {
        let mut decisions = self.gate_many(&[request], now_ms).await?;
        decisions
            .pop()
            .ok_or_else(|| StoreError::Corrupt("the gate decided nothing".into()))
    }

    /// [`Consent::gate`] for several messages, with one read of what is known about their
    /// recipients; the decisions come in the order of the requests.
    pub async fn gate_many(
        &self,
        requests: &[GateRequest<'_>],
        now_ms: i64,
    ) -> Result<Vec<GateDecision>, StoreError> {
        let subjects: Vec<String> = requests
            .iter()
            .map(|r| self.subject(r.tenant, r.contact))
            .collect();
        let queries: Vec<GateFactsQuery<'_>> = requests
            .iter()
            .zip(&subjects)
            .map(|(request, subject)| {
                let policy = self.policy(request.tenant);
                let window_ms =
                    i64::from(policy.settings.frequency_window_days) * 24 * 60 * 60 * 1000;
                GateFactsQuery {
                    tenant: request.tenant,
                    subject,
                    contact: request.contact,
                    channel: request.channel,
                    proactive_since: now_ms - window_ms,
                }
            })
            .collect();
        let facts = self.store.gate_facts_many(&queries).await?;
        Ok(requests
            .iter()
            .zip(facts)
            .map(|(request, facts)| {
                let policy = self.policy(request.tenant);
                let zone = contact_zone(facts.time_zone.as_deref(), request.address, &policy.zone);
                let facts = ContactFacts {
                    opted_out: facts.latest_consent == Some(ConsentAction::OptOut),
                    last_inbound_at_ms: facts.last_inbound_at,
                    recent_proactive: u32::try_from(facts.recent_proactive).unwrap_or(u32::MAX),
                };
                self.decide(*request, facts, &zone, now_ms)
            })
            .collect())
    }

    /// The gate with facts the caller already holds (a worker answering the message it just
    /// read knows them without another query).
    pub fn decide(
        &self,
        request: GateRequest<'_>,
        facts: ContactFacts,
        zone: &TimeZone,
        now_ms: i64,
    ) -> GateDecision {
        let outgoing = Outgoing {
            channel: request.channel,
            address: request.address,
            purpose: request.purpose,
            template: request.template,
        };
        decide(
            &self.policy(request.tenant).settings,
            zone,
            outgoing,
            facts,
            now_ms,
        )
    }
}
