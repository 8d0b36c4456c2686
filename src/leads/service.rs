//! The one way a lead changes: read it, apply a change, re-score, and save the new version with
//! its history entry and CRM jobs in one transaction; on a concurrent change (the version moved)
//! read again and re-apply. Everything that changes leads (messages, slow checks, opt-outs,
//! imports, the time-based review) goes through [`Leads::change`].

use std::sync::Arc;

use super::config::LeadsConfig;
use super::facts::{LeadFacts, LeadSource};
use super::recent::RecentLeads;
use super::record::{HistoryEntry, LeadId, LeadRecord};
use super::store::LeadChange;
use super::validate::{self, MxResolver};
use super::{phone, score, temperature};
use crate::crm::{Crm, JobKind};
use crate::domain::{Channel, Clock, ContactId, TenantId};
use crate::llm::LlmClient;
use crate::store::{Store, StoreError};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Attempts at saving a change that keeps meeting concurrent changes.
const MAX_CONFLICTS: usize = 8;

/// How to find the lead a change is about.
#[derive(Debug, Clone)]
pub enum Locate {
    Id(LeadId),
    /// The contact's lead; else an unclaimed lead (an import) with this email or phone; else a
    /// new lead from this source.
    Contact {
        contact: ContactId,
        source: LeadSource,
        email: Option<String>,
        phone: Option<String>,
    },
    /// A lead with this email or phone, else a new one (imports).
    EmailOrPhone {
        email: Option<String>,
        phone: Option<String>,
        source: LeadSource,
    },
}

/// What a change did besides facts and counters: reasons for the history, and extra CRM jobs.
#[derive(Debug, Default)]
pub struct Note {
    pub reasons: Vec<String>,
    pub opt_out_on: Option<Channel>,
}

/// The leads service: cheap to clone, shared by the pipeline, the API and background tasks.
#[derive(Debug, Clone)]
pub struct Leads {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<LeadsConfig>,
    pub crm: Crm,
    pub mx: MxResolver,
    pub llm: Option<LlmClient>,
    /// The leads this replica saved last, which the pipeline's changes start from.
    pub recent: RecentLeads,
}

impl Leads {
    /// The region national phone numbers are read in.
    pub fn region(&self) -> phonenumber::country::Id {
        phone::region(&self.config.region)
    }

    /// Applies `mutate` to the lead `locate` finds (creating it if the locator allows), re-scores
    /// it and saves it with history and CRM jobs. Returns the saved lead, or the unchanged one
    /// when nothing changed; `None` when `Locate::Id` names no lead.
    pub async fn change(
        &self,
        tenant: &TenantId,
        locate: &Locate,
        mutate: impl FnMut(&mut LeadRecord) -> Note,
    ) -> Result<Option<LeadRecord>, StoreError> {
        self.change_with(false, tenant, locate, mutate).await
    }

    /// [`Leads::change`] for the pipeline's updates from each message. It starts from the lead
    /// this replica saved last for the contact, if kept ([`RecentLeads`]), and its commit does
    /// not wait for the disk (see `store::relaxed`; CRM jobs it queues leave only after a durable
    /// claim).
    pub async fn change_relaxed(
        &self,
        tenant: &TenantId,
        locate: &Locate,
        mutate: impl FnMut(&mut LeadRecord) -> Note,
    ) -> Result<Option<LeadRecord>, StoreError> {
        self.change_with(true, tenant, locate, mutate).await
    }

    async fn change_with(
        &self,
        from_pipeline: bool,
        tenant: &TenantId,
        locate: &Locate,
        mut mutate: impl FnMut(&mut LeadRecord) -> Note,
    ) -> Result<Option<LeadRecord>, StoreError> {
        for attempt in 0..MAX_CONFLICTS {
            let now = self.clock.now_ms();
            // The pipeline starts from the lead it saved last for this contact, if it is kept;
            // the save below fails if that is no longer the stored one, and the next attempt
            // reads the store.
            let kept = match locate {
                Locate::Contact { contact, .. } if from_pipeline && attempt == 0 => {
                    self.recent.get(*contact)
                }
                _ => None,
            };
            let from_kept = kept.is_some();
            let current = match kept {
                Some(lead) => lead,
                None => match self.find(tenant, locate, now).await? {
                    Some(lead) => lead,
                    None => return Ok(None),
                },
            };
            let mut next = current.clone();
            let note = mutate(&mut next);
            let temperature_reasons = self.rescore(&mut next, now);
            let is_new = current.version == 0;
            if !is_new && next == current {
                if from_kept {
                    // Unchanged from what was kept: compare with the stored lead instead.
                    continue;
                }
                return Ok(Some(current));
            }
            next.version = current.version + 1;
            next.updated_at = now;

            let moved = is_new
                || next.score != current.score
                || next.tier != current.tier
                || note.opt_out_on.is_some();
            let history = moved.then(|| {
                let mut reasons = note.reasons.clone();
                reasons.extend(temperature_reasons.iter().cloned());
                if reasons.is_empty() {
                    reasons.push(if is_new { "new lead" } else { "time passed" }.into());
                }
                HistoryEntry {
                    from_score: (!is_new).then_some(current.score),
                    to_score: next.score,
                    from_tier: (!is_new).then_some(current.tier),
                    to_tier: next.tier,
                    reason: reasons.join("; "),
                    at: now,
                }
            });
            let mut kinds = Vec::new();
            if is_new || next.crm_visible_change(&current) {
                kinds.push(JobKind::Upsert);
            }
            if next.tier == score::Tier::Hot && (is_new || current.tier != score::Tier::Hot) {
                kinds.push(JobKind::HotAlert);
            }
            if note.opt_out_on.is_some() {
                kinds.push(JobKind::OptOut);
            }
            let jobs = self.crm.jobs_for(&next, &kinds, note.opt_out_on);
            let has_jobs = !jobs.is_empty();
            let saved = self
                .store
                .save_lead_change(&LeadChange {
                    lead: &next,
                    history,
                    jobs,
                    relaxed: from_pipeline,
                })
                .await?;
            if saved {
                self.recent.saved(&next);
                if has_jobs {
                    self.crm.wakeup.notify_one();
                }
                tracing::debug!(lead.id = %next.id, lead.version = next.version, lead.score = next.score, lead.tier = next.tier.as_str(), "lead changed");
                return Ok(Some(next));
            }
            if let Some(contact) = next.contact_id {
                self.recent.forget(contact);
            }
            tracing::debug!(lead.id = %next.id, from_kept, "lead changed concurrently; applying again");
        }
        Err(StoreError::Corrupt(
            "a lead kept changing concurrently; the change was not applied".into(),
        ))
    }

    async fn find(
        &self,
        tenant: &TenantId,
        locate: &Locate,
        now: i64,
    ) -> Result<Option<LeadRecord>, StoreError> {
        Ok(match locate {
            Locate::Id(id) => self.store.lead(*id).await?.filter(|l| &l.tenant == tenant),
            Locate::Contact {
                contact,
                source,
                email,
                phone,
            } => {
                if let Some(lead) = self.store.lead_by_contact(*contact).await? {
                    Some(lead)
                } else {
                    let unclaimed = self
                        .store
                        .lead_by_email_or_phone(tenant, email.as_deref(), phone.as_deref())
                        .await?
                        .filter(|l| l.contact_id.is_none());
                    Some(match unclaimed {
                        Some(mut lead) => {
                            lead.contact_id = Some(*contact);
                            lead
                        }
                        None => LeadRecord::new(tenant.clone(), Some(*contact), *source, now),
                    })
                }
            }
            Locate::EmailOrPhone {
                email,
                phone,
                source,
            } => Some(
                match self
                    .store
                    .lead_by_email_or_phone(tenant, email.as_deref(), phone.as_deref())
                    .await?
                {
                    Some(lead) => lead,
                    None => LeadRecord::new(tenant.clone(), None, *source, now),
                },
            ),
        })
    }

    /// Recomputes score, tier (with temperature moves), confidence, factors and the next review
    /// time; returns the temperature moves' reasons.
    fn rescore(&self, lead: &mut LeadRecord, now: i64) -> Vec<String> {
        let computed = score::score(
            score::ScoreInput {
                facts: &lead.facts,
                verification: &lead.verification,
                source: lead.source,
                engagement: &lead.engagement,
                now_ms: now,
            },
            &self.config,
        );
        let (tier, reasons) =
            temperature::apply(computed.tier, &lead.engagement, &self.config, now);
        lead.score = computed.total;
        lead.tier = tier;
        lead.confidence = computed.confidence;
        lead.factors = computed.factors;
        lead.review_at = next_review(
            lead.engagement.last_at,
            now,
            self.config.temperature.silence_days,
        )
        .map(review_slot);
        reasons
    }

    /// Merges facts into a lead, keeping the phone's verification current; returns the
    /// history reason, if any fact changed.
    pub fn merge_facts(&self, lead: &mut LeadRecord, facts: &LeadFacts) -> Option<String> {
        let changed = lead.facts.merge(facts);
        if changed.contains(&"phone") {
            lead.verification.phone = lead
                .facts
                .phone
                .as_deref()
                .and_then(|p| phone::check(p, self.region()));
        }
        (!changed.is_empty()).then(|| format!("learned {}", changed.join(", ")))
    }

    /// Checks the lead's email (MX lookup included, so slow) and records the result.
    pub async fn verify_email(&self, tenant: &TenantId, id: LeadId) -> Result<(), StoreError> {
        let Some(lead) = self.store.lead(id).await? else {
            return Ok(());
        };
        let Some(email) = lead.facts.email.clone() else {
            return Ok(());
        };
        if !validate::needs_email_check(&lead.verification, Some(&email)) {
            return Ok(());
        }
        let (status, mx, disposable) = validate::check_email(&email, &self.mx).await;
        self.change(tenant, &Locate::Id(id), |lead| {
            if lead.facts.email.as_deref() != Some(email.as_str()) {
                return Note::default();
            }
            lead.verification.email_checked = Some(email.clone());
            lead.verification.email = Some(status);
            lead.verification.mx = Some(mx);
            lead.verification.disposable = disposable;
            Note {
                reasons: vec![format!("email checked: {status:?}").to_lowercase()],
                ..Note::default()
            }
        })
        .await?;
        Ok(())
    }

    /// The contact opted out: the lead says so and the CRMs hear of it (Mautic's do-not-contact,
    /// the webhook's `lead.opted_out`).
    pub async fn opt_out(
        &self,
        tenant: &TenantId,
        contact: ContactId,
        channel: Channel,
    ) -> Result<(), StoreError> {
        let locate = Locate::Contact {
            contact,
            source: LeadSource::of_channel(channel, false),
            email: None,
            phone: None,
        };
        self.change(tenant, &locate, |lead| {
            if lead.opted_out {
                return Note::default();
            }
            lead.opted_out = true;
            Note {
                reasons: vec![format!("opted out on {channel}")],
                opt_out_on: Some(channel),
            }
        })
        .await?;
        Ok(())
    }

    /// Re-scores leads whose score the passage of time has changed (recency steps, silence
    /// decay); returns how many were looked at.
    pub async fn review_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let due = self.store.leads_due_for_review(now, 500).await?;
        for lead in &due {
            self.change(&lead.tenant, &Locate::Id(lead.id), |_| Note::default())
                .await?;
        }
        Ok(due.len())
    }
}

/// How finely review times are kept: a review falls at the end of the hour its step falls in.
const REVIEW_SLOT_MS: i64 = 60 * 60 * 1000;

/// The end of the review slot `at` falls in (`at` itself on a slot boundary). A lead's review
/// time then stays the same through a burst of messages, so each message's lead update leaves
/// the review index alone; a recency step is applied at most an hour late.
pub fn review_slot(at: i64) -> i64 {
    match at.rem_euclid(REVIEW_SLOT_MS) {
        0 => at,
        into_slot => at - into_slot + REVIEW_SLOT_MS,
    }
}

/// When time alone next changes a score last engaged at `last_at`: the recency steps (1, 7 and
/// 30 days), then each silence period (up to five).
pub fn next_review(last_at: Option<i64>, now: i64, silence_days: i64) -> Option<i64> {
    let last = last_at?;
    let period = silence_days.max(1) * DAY_MS;
    let steps = [DAY_MS, 7 * DAY_MS, 30 * DAY_MS]
        .into_iter()
        .chain((1..=5).map(|k| k * period));
    steps.map(|s| last + s).filter(|at| *at > now).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_fall_on_the_recency_steps_then_each_silent_period() {
        let last = 1_000_000;
        assert_eq!(next_review(None, last, 30), None);
        assert_eq!(next_review(Some(last), last, 30), Some(last + DAY_MS));
        assert_eq!(
            next_review(Some(last), last + DAY_MS, 30),
            Some(last + 7 * DAY_MS)
        );
        assert_eq!(
            next_review(Some(last), last + 8 * DAY_MS, 30),
            Some(last + 30 * DAY_MS)
        );
        assert_eq!(
            next_review(Some(last), last + 31 * DAY_MS, 30),
            Some(last + 60 * DAY_MS)
        );
        assert_eq!(next_review(Some(last), last + 151 * DAY_MS, 30), None);
    }

    #[test]
    fn review_times_round_up_to_the_end_of_their_hour() {
        let hour = 60 * 60 * 1000;
        assert_eq!(review_slot(5 * hour), 5 * hour);
        assert_eq!(review_slot(5 * hour + 1), 6 * hour);
        assert_eq!(review_slot(6 * hour - 1), 6 * hour);
        // Messages a few seconds apart keep one review time; a step is never reviewed early.
        let first = 1_700_000_123_456;
        let burst: Vec<i64> = (0..40)
            .map(|i| review_slot(first + i * 1_500 + DAY_MS))
            .collect();
        assert!(burst.iter().all(|at| *at == burst[0]), "{burst:?}");
        assert!(burst[0] >= first + 39 * 1_500 + DAY_MS);
        assert!(burst[0] - (first + DAY_MS) < hour);
    }
}
