//! The CRM worker: a background task that delivers due outbox jobs (woken when a lead change
//! wrote one, polling as a fallback so replicas share the outbox), and every few minutes asks
//! the leads module to re-score leads whose score time alone has changed (recency steps,
//! silence decay). On shutdown it makes one last delivery round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::deliver::Outcome;
use super::payload::LeadSnapshot;
use super::{AdapterKind, Crm, JobKind, SyncJob, hubspot, mautic, slack, webhook};
use crate::app::AppState;
use crate::retry::RetryPolicy;
use crate::store::StoreError;

/// How often leads are re-scored for the passage of time.
const REVIEW_INTERVAL: Duration = Duration::from_secs(300);

/// Runs until `shutdown`.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let crm = &state.crm;
    let mut last_review = tokio::time::Instant::now() - REVIEW_INTERVAL;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = crm.wakeup.notified() => {}
            _ = tokio::time::sleep(crm.config.poll_interval) => {}
        }
        if let Err(err) = deliver_due(crm).await {
            tracing::warn!(error = %err, "CRM delivery round failed; will retry");
        }
        if last_review.elapsed() >= REVIEW_INTERVAL {
            last_review = tokio::time::Instant::now();
            if let Err(err) = state.leads.review_due().await {
                tracing::warn!(error = %err, "lead review failed; will retry");
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), deliver_due(crm)).await;
}

/// Delivers every due job (one attempt each); returns how many jobs were attempted.
pub async fn deliver_due(crm: &Crm) -> Result<usize, StoreError> {
    let mut attempted = 0;
    loop {
        let now = crm.clock.now_ms();
        let limit = (crm.config.batch_size * 4) as i64;
        let jobs = crm
            .store
            .claim_crm_jobs(now, crm.config.lease.as_millis() as i64, limit)
            .await?;
        if jobs.is_empty() {
            return Ok(attempted);
        }
        attempted += jobs.len();
        deliver(crm, jobs).await?;
    }
}

/// One attempt for each claimed job; HubSpot upserts of a tenant go in batches.
async fn deliver(crm: &Crm, jobs: Vec<SyncJob>) -> Result<(), StoreError> {
    let mut hubspot_upserts: BTreeMap<String, Vec<(SyncJob, LeadSnapshot)>> = BTreeMap::new();
    for job in jobs {
        let snapshot: LeadSnapshot = match serde_json::from_str(&job.payload) {
            Ok(s) => s,
            Err(err) => {
                record(
                    crm,
                    &job,
                    Outcome::Dead {
                        error: format!("unreadable payload: {err}"),
                    },
                )
                .await?;
                continue;
            }
        };
        if job.adapter == AdapterKind::Hubspot && job.kind == JobKind::Upsert {
            hubspot_upserts
                .entry(job.tenant.to_string())
                .or_default()
                .push((job, snapshot));
            continue;
        }
        let outcome = deliver_one(crm, &job, &snapshot).await;
        record(crm, &job, outcome).await?;
    }
    for (_, batch) in hubspot_upserts {
        let tenant = batch[0].0.tenant.clone();
        let Some(settings) = crm.config.tenant(&tenant).and_then(|t| t.hubspot.as_ref()) else {
            for (job, _) in &batch {
                record(crm, job, not_configured(job)).await?;
            }
            continue;
        };
        for chunk in batch.chunks(crm.config.batch_size) {
            let inputs: Vec<(Uuid, LeadSnapshot)> =
                chunk.iter().map(|(j, s)| (j.id, s.clone())).collect();
            let outcomes = hubspot::upsert(&crm.http, settings, &inputs).await;
            for ((job, _), (_, outcome)) in chunk.iter().zip(outcomes) {
                record(crm, job, outcome).await?;
            }
        }
    }
    Ok(())
}

fn not_configured(job: &SyncJob) -> Outcome {
    Outcome::Retry {
        error: format!(
            "{} is no longer configured for this tenant",
            job.adapter.as_str()
        ),
        retry_after: None,
    }
}

async fn deliver_one(crm: &Crm, job: &SyncJob, lead: &LeadSnapshot) -> Outcome {
    let Some(tenant) = crm.config.tenant(&job.tenant) else {
        return not_configured(job);
    };
    let mapping = |adapter| crm.store.crm_mapping(&job.tenant, &job.lead_id, adapter);
    match (job.adapter, job.kind) {
        (AdapterKind::Hubspot, JobKind::HotAlert) => {
            let Some(settings) = &tenant.hubspot else {
                return not_configured(job);
            };
            match mapping(AdapterKind::Hubspot).await {
                Ok(Some(contact)) => {
                    match hubspot::create_task(
                        &crm.http,
                        settings,
                        &contact,
                        lead,
                        crm.clock.now_ms(),
                    )
                    .await
                    {
                        // The task's id is not the contact's: keep the mapping as it is.
                        Outcome::Delivered { .. } => Outcome::delivered(),
                        other => other,
                    }
                }
                Ok(None) => Outcome::Retry {
                    error: "the HubSpot contact does not exist yet".into(),
                    retry_after: None,
                },
                Err(err) => Outcome::Retry {
                    error: format!("store: {err}"),
                    retry_after: None,
                },
            }
        }
        (AdapterKind::Mautic, kind) => {
            let Some(settings) = &tenant.mautic else {
                return not_configured(job);
            };
            let known = match mapping(AdapterKind::Mautic).await {
                Ok(known) => known,
                Err(err) => {
                    return Outcome::Retry {
                        error: format!("store: {err}"),
                        retry_after: None,
                    };
                }
            };
            if kind == JobKind::OptOut {
                mautic::do_not_contact(&crm.http, settings, known.as_deref(), lead).await
            } else {
                mautic::upsert(&crm.http, settings, known.as_deref(), lead).await
            }
        }
        (AdapterKind::Webhook, kind) => match &tenant.webhook {
            Some(settings) => {
                let message_id = format!("msg_{}", job.id.simple());
                webhook::send(
                    &crm.http,
                    settings,
                    &message_id,
                    kind,
                    lead,
                    crm.clock.now_ms(),
                )
                .await
            }
            None => not_configured(job),
        },
        (AdapterKind::Slack, _) => match &tenant.slack {
            Some(settings) => slack::notify(&crm.http, settings, lead).await,
            None => not_configured(job),
        },
        (AdapterKind::Hubspot, _) => Outcome::Dead {
            error: format!("HubSpot does not take {} jobs", job.kind.as_str()),
        },
    }
}

/// Records an attempt's outcome: delivered (with the CRM's id), retried later, or dead.
async fn record(crm: &Crm, job: &SyncJob, outcome: Outcome) -> Result<(), StoreError> {
    let now = crm.clock.now_ms();
    match outcome {
        Outcome::Delivered { external_id } => {
            if let Some(external_id) = external_id {
                crm.store
                    .set_crm_mapping(&job.tenant, &job.lead_id, job.adapter, &external_id, now)
                    .await?;
            }
            tracing::info!(crm.job = %job.id, crm.adapter = job.adapter.as_str(), crm.kind = job.kind.as_str(), attempts = job.attempts, "CRM job delivered");
            crm.store.crm_job_delivered(job.id, now).await
        }
        Outcome::Retry { error, retry_after } => {
            let policy = RetryPolicy {
                first_delay: crm.config.first_retry,
                max_delay: crm.config.max_retry,
                max_attempts: crm.config.max_attempts,
            };
            match policy.delay_after(job.attempts.max(1) as u32, retry_after) {
                Some(delay) => {
                    tracing::info!(crm.job = %job.id, crm.adapter = job.adapter.as_str(), attempts = job.attempts, delay_ms = delay.as_millis() as u64, error = %error, "CRM job will be retried");
                    crm.store
                        .crm_job_retry(job.id, now + delay.as_millis() as i64, &error, now)
                        .await
                }
                None => {
                    tracing::warn!(crm.job = %job.id, crm.adapter = job.adapter.as_str(), attempts = job.attempts, error = %error, "CRM job dead-lettered after its last attempt");
                    crm.store.crm_job_dead(job.id, &error, now).await
                }
            }
        }
        Outcome::Dead { error } => {
            tracing::warn!(crm.job = %job.id, crm.adapter = job.adapter.as_str(), error = %error, "CRM job dead-lettered: the CRM refused it");
            crm.store.crm_job_dead(job.id, &error, now).await
        }
    }
}
