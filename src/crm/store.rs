//! The CRM outbox and mapping tables. Claiming takes the oldest pending job of each lead and
//! adapter (a later change of a lead never overtakes an earlier one), with a lease so a crashed
//! worker's jobs are taken again; outcomes are recorded as delivered, retry-at or dead.

use serde::Serialize;
use uuid::Uuid;

use super::{AdapterKind, JobKind};
use crate::domain::TenantId;
use crate::store::on_pool;
use crate::store::{Store, StoreError};

/// A claimed job.
#[derive(Debug, Clone)]
pub struct SyncJob {
    pub id: Uuid,
    pub tenant: TenantId,
    pub lead_id: String,
    pub adapter: AdapterKind,
    pub kind: JobKind,
    pub payload: String,
    pub lead_version: i64,
    /// Attempts including this one.
    pub attempts: i32,
}

/// A dead-lettered job, as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub tenant: String,
    pub lead_id: String,
    pub adapter: String,
    pub kind: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    tenant_id: String,
    lead_id: String,
    adapter: String,
    kind: String,
    payload: String,
    lead_version: i64,
    attempts: i32,
}

const CANDIDATES: &str = "
    SELECT j.seq FROM crm_outbox j
    WHERE j.status = 'pending' AND j.next_attempt_at <= $2
      AND (j.lease_until IS NULL OR j.lease_until < $2)
      AND NOT EXISTS (
          SELECT 1 FROM crm_outbox p
          WHERE p.lead_id = j.lead_id AND p.adapter = j.adapter
            AND p.status = 'pending' AND p.seq < j.seq)
    ORDER BY j.seq
    LIMIT $3";

const RETURNING: &str =
    " RETURNING id, tenant_id, lead_id, adapter, kind, payload, lead_version, attempts";

impl Store {
    /// Claims up to `limit` due jobs (at most one per lead and adapter) for `lease_ms`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn claim_crm_jobs(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<SyncJob>, StoreError> {
        let update =
            "UPDATE crm_outbox SET lease_until = $1, attempts = attempts + 1 WHERE seq IN (";
        let rows: Vec<JobRow> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_as(&format!("{update}{CANDIDATES}){RETURNING}"))
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(&format!(
                    "{update}{CANDIDATES} FOR UPDATE OF j SKIP LOCKED){RETURNING}"
                ))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        let mut jobs: Vec<SyncJob> = rows
            .into_iter()
            .map(|row| {
                Ok(SyncJob {
                    id: Uuid::parse_str(&row.id)
                        .map_err(|e| StoreError::Corrupt(format!("crm job id: {e}")))?,
                    tenant: TenantId::parse(&row.tenant_id).map_err(StoreError::Corrupt)?,
                    lead_id: row.lead_id,
                    adapter: AdapterKind::parse(&row.adapter).ok_or_else(|| {
                        StoreError::Corrupt(format!("crm adapter `{}`", row.adapter))
                    })?,
                    kind: JobKind::parse(&row.kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("crm job kind `{}`", row.kind))
                    })?,
                    payload: row.payload,
                    lead_version: row.lead_version,
                    attempts: row.attempts,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        // RETURNING does not promise an order; jobs are delivered oldest first.
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// The job reached the CRM.
    pub async fn crm_job_delivered(&self, id: Uuid, now: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE crm_outbox SET status = 'delivered', lease_until = NULL, last_error = NULL, updated_at = $1
                 WHERE id = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The attempt failed in a way worth retrying at `next_attempt_at`.
    pub async fn crm_job_retry(
        &self,
        id: Uuid,
        next_attempt_at: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE crm_outbox SET next_attempt_at = $1, lease_until = NULL, last_error = $2, updated_at = $3
                 WHERE id = $4 AND status = 'pending'",
            )
            .bind(next_attempt_at)
            .bind(error)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The job cannot be delivered (a permanent error, or attempts exhausted): dead-letter it.
    pub async fn crm_job_dead(&self, id: Uuid, error: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE crm_outbox SET status = 'dead', lease_until = NULL, last_error = $1, updated_at = $2
                 WHERE id = $3 AND status = 'pending'",
            )
            .bind(error)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Dead-lettered jobs, oldest first, optionally of one tenant.
    pub async fn crm_dead_letters(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            i32,
            Option<String>,
            i64,
            i64,
        );
        let rows: Vec<Row> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT id, tenant_id, lead_id, adapter, kind, attempts, last_error, created_at, updated_at
                 FROM crm_outbox WHERE status = 'dead' AND ($1 IS NULL OR tenant_id = $1)
                 ORDER BY seq LIMIT $2",
            )
            .bind(tenant.map(|t| t.as_str()))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    tenant,
                    lead_id,
                    adapter,
                    kind,
                    attempts,
                    last_error,
                    created_at,
                    updated_at,
                )| {
                    DeadLetter {
                        id,
                        tenant,
                        lead_id,
                        adapter,
                        kind,
                        attempts,
                        last_error,
                        created_at,
                        updated_at,
                    }
                },
            )
            .collect())
    }

    /// Puts a dead-lettered job back in the queue with fresh attempts. `false` when no dead
    /// job has this id.
    pub async fn crm_replay(&self, id: Uuid, now: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE crm_outbox SET status = 'pending', attempts = 0, next_attempt_at = $1,
                     lease_until = NULL, updated_at = $1
                 WHERE id = $2 AND status = 'dead'",
            )
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Jobs not yet delivered (pending), for tests and metrics.
    pub async fn crm_pending_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool, Db| {
            sqlx::query_as("SELECT COUNT(*) FROM crm_outbox WHERE status = 'pending'")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// The CRM's id for a lead, if it has one.
    pub async fn crm_mapping(
        &self,
        tenant: &TenantId,
        lead_id: &str,
        adapter: AdapterKind,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT external_id FROM crm_mappings WHERE tenant_id = $1 AND lead_id = $2 AND adapter = $3",
            )
            .bind(tenant.as_str())
            .bind(lead_id)
            .bind(adapter.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Records (or replaces) the CRM's id for a lead.
    pub async fn set_crm_mapping(
        &self,
        tenant: &TenantId,
        lead_id: &str,
        adapter: AdapterKind,
        external_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO crm_mappings (tenant_id, lead_id, adapter, external_id, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, lead_id, adapter)
                 DO UPDATE SET external_id = excluded.external_id, updated_at = excluded.updated_at",
            )
            .bind(tenant.as_str())
            .bind(lead_id)
            .bind(adapter.as_str())
            .bind(external_id)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
