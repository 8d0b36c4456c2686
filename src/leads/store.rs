//! Lead rows in SQLite or PostgreSQL: reading (by id, contact, email or phone; lists by tier and
//! score), and saving a change together with its history entry and its CRM outbox jobs in one
//! transaction, conditional on the version read (optimistic concurrency: a concurrent change
//! makes the save return `false` and the caller reads again).

use serde::de::DeserializeOwned;

use super::facts::LeadSource;
use super::record::{HistoryEntry, LeadId, LeadRecord};
use super::score::Tier;
use crate::crm::NewSyncJob;
use crate::domain::{ContactId, TenantId};
use crate::store::{Store, StoreError, on_pool};

/// A lead's next version, written only over the version it was computed from.
const LEAD_UPDATE: &str =
    "UPDATE leads SET contact_id = $1, email = $2, phone = $3, source = $4, facts = $5,
         verification = $6, engagement = $7, last_engaged_at = $8, review_at = $9,
         score = $10, tier = $11, confidence = $12, factors = $13, opted_out = $14,
         version = $15, updated_at = $16
     WHERE id = $17 AND version = $18";

/// [`LEAD_UPDATE`] as a PostgreSQL statement of its own whose commit does not wait for the disk.
static LEAD_UPDATE_RELAXED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let relaxed = LEAD_UPDATE.replacen(
        "WHERE id",
        &format!("FROM {} WHERE id", crate::store::POSTGRES_RELAXED_ROW),
        1,
    );
    assert!(relaxed.contains(crate::store::POSTGRES_RELAXED_ROW));
    relaxed
});

const COLUMNS: &str = "id, tenant_id, contact_id, source, facts, verification, engagement, score, tier, confidence, factors, opted_out, review_at, version, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct LeadRow {
    id: String,
    tenant_id: String,
    contact_id: Option<String>,
    source: String,
    facts: String,
    verification: String,
    engagement: String,
    score: i32,
    tier: String,
    confidence: f64,
    factors: String,
    opted_out: bool,
    review_at: Option<i64>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

fn corrupt(what: &str) -> impl Fn(String) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("lead {what}: {e}"))
}

fn json<T: DeserializeOwned>(raw: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| corrupt(what)(e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl TryFrom<LeadRow> for LeadRecord {
    type Error = StoreError;
    fn try_from(row: LeadRow) -> Result<Self, StoreError> {
        Ok(LeadRecord {
            id: LeadId::parse(&row.id).map_err(|e| corrupt("id")(e.to_string()))?,
            tenant: TenantId::parse(&row.tenant_id).map_err(corrupt("tenant"))?,
            contact_id: row
                .contact_id
                .as_deref()
                .map(ContactId::parse)
                .transpose()
                .map_err(|e| corrupt("contact")(e.to_string()))?,
            source: LeadSource::parse(&row.source)
                .ok_or_else(|| corrupt("source")(row.source.clone()))?,
            facts: json(&row.facts, "facts")?,
            verification: json(&row.verification, "verification")?,
            engagement: json(&row.engagement, "engagement")?,
            score: row.score,
            tier: Tier::parse(&row.tier).ok_or_else(|| corrupt("tier")(row.tier.clone()))?,
            confidence: row.confidence,
            factors: json(&row.factors, "factors")?,
            opted_out: row.opted_out,
            review_at: row.review_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// How to order a lead list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadOrder {
    /// Highest score first.
    Score,
    /// Most recently changed first.
    Recent,
}

/// A change to save: the new state (its `version` one more than the stored one, or 1 for a new
/// lead), the history entry if score or tier moved, and CRM jobs.
#[derive(Debug)]
pub struct LeadChange<'a> {
    pub lead: &'a LeadRecord,
    pub history: Option<HistoryEntry>,
    pub jobs: Vec<NewSyncJob>,
    /// The commit need not wait for the disk (`store::relaxed`): the pipeline's own updates,
    /// which a power cut can only lose until the next durable commit.
    pub relaxed: bool,
}

impl Store {
    /// One lead.
    #[tracing::instrument(level = "debug", skip_all, fields(lead.id = %id))]
    pub async fn lead(&self, id: LeadId) -> Result<Option<LeadRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM leads WHERE id = $1");
        let row: Option<LeadRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(LeadRecord::try_from).transpose()
    }

    /// The lead of a contact.
    #[tracing::instrument(level = "debug", skip_all, fields(contact.id = %contact))]
    pub async fn lead_by_contact(
        &self,
        contact: ContactId,
    ) -> Result<Option<LeadRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM leads WHERE contact_id = $1");
        let row: Option<LeadRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(contact.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(LeadRecord::try_from).transpose()
    }

    /// The oldest lead of a tenant with this email or this phone (deduplication).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn lead_by_email_or_phone(
        &self,
        tenant: &TenantId,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<LeadRecord>, StoreError> {
        if email.is_none() && phone.is_none() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM leads WHERE tenant_id = $1 AND (email = $2 OR phone = $3)
             ORDER BY created_at, id LIMIT 1"
        );
        let row: Option<LeadRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(tenant.as_str())
                .bind(email)
                .bind(phone)
                .fetch_optional(pool)
                .await?
        });
        row.map(LeadRecord::try_from).transpose()
    }

    /// Leads, optionally of one tenant and tier.
    pub async fn list_leads(
        &self,
        tenant: Option<&TenantId>,
        tier: Option<Tier>,
        order: LeadOrder,
        limit: i64,
    ) -> Result<Vec<LeadRecord>, StoreError> {
        let order = match order {
            LeadOrder::Score => "score DESC, updated_at DESC, id",
            LeadOrder::Recent => "updated_at DESC, id",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM leads
             WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR tier = $2)
             ORDER BY {order} LIMIT $3"
        );
        let rows: Vec<LeadRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(tenant.map(|t| t.as_str()))
                .bind(tier.map(Tier::as_str))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(LeadRecord::try_from).collect()
    }

    /// Leads matching `filter` (tier, the contact's channel, last change, and a search over the
    /// name, email and phone facts and the contact's name and address), highest score first.
    #[tracing::instrument(level = "debug", skip_all, fields(limit = filter.limit))]
    pub async fn search_leads(
        &self,
        filter: &crate::store::ListFilter,
    ) -> Result<Vec<LeadRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM leads
             WHERE ($1 IS NULL OR tenant_id = $1)
               AND ($2 IS NULL OR tier = $2)
               AND ($3 IS NULL OR contact_id IN (SELECT id FROM contacts WHERE channel = $3))
               AND ($4 IS NULL OR updated_at >= $4)
               AND ($5 IS NULL OR updated_at < $5)
               AND ($6 IS NULL OR LOWER(facts) LIKE $6 ESCAPE '\\' OR phone LIKE $7 ESCAPE '\\'
                    OR contact_id IN (SELECT id FROM contacts
                        WHERE LOWER(COALESCE(display_name, '')) LIKE $6 ESCAPE '\\'
                           OR LOWER(address) LIKE $6 ESCAPE '\\' OR address LIKE $7 ESCAPE '\\'))
             ORDER BY score DESC, updated_at DESC, id LIMIT $8"
        );
        let rows: Vec<LeadRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(filter.tenant.as_ref().map(|t| t.as_str()))
                .bind(filter.tier.map(Tier::as_str))
                .bind(filter.channel.map(|c| c.as_str()))
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(filter.text_pattern())
                .bind(filter.number_pattern())
                .bind(filter.limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(LeadRecord::try_from).collect()
    }

    /// Leads whose score time alone may have changed by `now`.
    pub async fn leads_due_for_review(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<LeadRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM leads WHERE review_at <= $1 ORDER BY review_at LIMIT $2"
        );
        let rows: Vec<LeadRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(LeadRecord::try_from).collect()
    }

    /// A lead's score and tier changes, oldest first.
    pub async fn lead_history(&self, id: LeadId) -> Result<Vec<HistoryEntry>, StoreError> {
        type Row = (Option<i32>, i32, Option<String>, String, String, i64);
        let rows: Vec<Row> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT from_score, to_score, from_tier, to_tier, reason, at FROM lead_history
                 WHERE lead_id = $1 ORDER BY seq",
            )
            .bind(id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(from_score, to_score, from_tier, to_tier, reason, at)| {
                Ok(HistoryEntry {
                    from_score,
                    to_score,
                    from_tier: from_tier.as_deref().and_then(Tier::parse),
                    to_tier: Tier::parse(&to_tier)
                        .ok_or_else(|| corrupt("history tier")(to_tier.clone()))?,
                    reason,
                    at,
                })
            })
            .collect()
    }

    /// Saves a change with its history and CRM jobs, atomically. Returns `false` (saving
    /// nothing) when the stored version is not the one the change was built on.
    #[tracing::instrument(level = "debug", skip_all, fields(lead.id = %change.lead.id, lead.version = change.lead.version, jobs = change.jobs.len()))]
    pub async fn save_lead_change(&self, change: &LeadChange<'_>) -> Result<bool, StoreError> {
        let lead = change.lead;
        let facts = to_json(&lead.facts)?;
        let verification = to_json(&lead.verification)?;
        let engagement = to_json(&lead.engagement)?;
        let factors = to_json(&lead.factors)?;
        let id = lead.id.to_string();
        let contact = lead.contact_id.map(|c| c.to_string());
        // The usual change from a message (no history line, no CRM job) is one statement on
        // PostgreSQL, its own relaxed transaction: one round trip instead of three.
        let single_statement = matches!(self, Store::Postgres(_))
            && change.relaxed
            && lead.version > 1
            && change.history.is_none()
            && change.jobs.is_empty();
        on_pool!(self, |pool, Db| {
            // The fields both the INSERT and the UPDATE write, in their parameter order.
            macro_rules! with_fields {
                ($query:expr) => {
                    $query
                        .bind(contact.as_deref())
                        .bind(lead.facts.email.as_deref())
                        .bind(lead.facts.phone.as_deref())
                        .bind(lead.source.as_str())
                        .bind(&facts)
                        .bind(&verification)
                        .bind(&engagement)
                        .bind(lead.engagement.last_at)
                        .bind(lead.review_at)
                        .bind(lead.score)
                        .bind(lead.tier.as_str())
                        .bind(lead.confidence)
                        .bind(&factors)
                        .bind(lead.opted_out)
                };
            }
            let update = |sql: &'static str| {
                with_fields!(sqlx::query::<Db>(sql))
                    .bind(lead.version)
                    .bind(lead.updated_at)
                    .bind(&id)
                    .bind(lead.version - 1)
            };
            if single_statement {
                let written = update(LEAD_UPDATE_RELAXED.as_str())
                    .execute(pool)
                    .await?
                    .rows_affected();
                return Ok(written == 1);
            }
            let mut relaxed = match change.relaxed {
                true => Some(crate::store::RelaxedConnection::<Db>::acquire(pool).await?),
                false => None,
            };
            let mut tx = match relaxed.as_mut() {
                Some(conn) => conn.begin().await?,
                None => pool.begin().await?,
            };
            let written = if lead.version == 1 {
                with_fields!(sqlx::query(
                    "INSERT INTO leads (contact_id, email, phone, source, facts, verification, engagement, last_engaged_at, review_at, score, tier, confidence, factors, opted_out, id, tenant_id, created_at, updated_at, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 1)
                     ON CONFLICT DO NOTHING",
                ))
                .bind(&id)
                .bind(lead.tenant.as_str())
                .bind(lead.created_at)
                .bind(lead.updated_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                update(LEAD_UPDATE).execute(&mut *tx).await?.rows_affected()
            };
            if written == 0 {
                tx.rollback().await?;
                if let Some(conn) = relaxed {
                    conn.release().await;
                }
                return Ok(false);
            }
            if let Some(entry) = &change.history {
                sqlx::query(
                    "INSERT INTO lead_history (tenant_id, lead_id, from_score, to_score, from_tier, to_tier, reason, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(lead.tenant.as_str())
                .bind(&id)
                .bind(entry.from_score)
                .bind(entry.to_score)
                .bind(entry.from_tier.map(Tier::as_str))
                .bind(entry.to_tier.as_str())
                .bind(&entry.reason)
                .bind(entry.at)
                .execute(&mut *tx)
                .await?;
            }
            for job in &change.jobs {
                sqlx::query(
                    "INSERT INTO crm_outbox (id, tenant_id, lead_id, adapter, kind, payload, lead_version, status, attempts, next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8)",
                )
                .bind(job.id.to_string())
                .bind(lead.tenant.as_str())
                .bind(&id)
                .bind(job.adapter.as_str())
                .bind(job.kind.as_str())
                .bind(&job.payload)
                .bind(lead.version)
                .bind(lead.updated_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            if let Some(conn) = relaxed {
                conn.release().await;
            }
            Ok(true)
        })
    }
}
