//! The handoff queue: opening a handoff (with the completion of the message that caused it),
//! listing it with queue positions, one claim winning, release back to the bot, and the
//! escalation of handoffs left unclaimed past their SLA.

use super::{Store, StoreError, on_pool};
use crate::domain::{ConversationId, TenantId};

/// A handoff to open in the same transaction as a message's completion.
#[derive(Debug, Clone)]
pub struct NewHandoff {
    pub id: String,
    pub reason: String,
    pub detail: Option<String>,
    /// The context card (JSON).
    pub context: serde_json::Value,
    pub sla_due_at: i64,
    /// The queue position the prospect is told.
    pub told_position: i64,
}

/// A handoff with its conversation.
#[derive(Debug, Clone)]
pub struct HandoffRecord {
    pub id: String,
    pub tenant: String,
    pub conversation_id: String,
    pub channel: String,
    pub contact_id: String,
    /// The contact's name as the provider gave it. Personal data: never log it.
    pub contact_name: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
    pub status: String,
    pub claimed_by: Option<String>,
    pub release_note: Option<String>,
    pub context: serde_json::Value,
    pub sla_due_at: i64,
    pub escalated_at: Option<i64>,
    pub last_told_position: Option<i64>,
    pub created_at: i64,
    pub claimed_at: Option<i64>,
    pub released_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct HandoffRow {
    id: String,
    tenant_id: String,
    conversation_id: String,
    channel: String,
    contact_id: String,
    display_name: Option<String>,
    reason: String,
    detail: Option<String>,
    status: String,
    claimed_by: Option<String>,
    release_note: Option<String>,
    context: String,
    sla_due_at: i64,
    escalated_at: Option<i64>,
    last_told_position: Option<i32>,
    created_at: i64,
    claimed_at: Option<i64>,
    released_at: Option<i64>,
}

impl From<HandoffRow> for HandoffRecord {
    fn from(r: HandoffRow) -> Self {
        HandoffRecord {
            id: r.id,
            tenant: r.tenant_id,
            conversation_id: r.conversation_id,
            channel: r.channel,
            contact_id: r.contact_id,
            contact_name: r.display_name,
            reason: r.reason,
            detail: r.detail,
            status: r.status,
            claimed_by: r.claimed_by,
            release_note: r.release_note,
            context: serde_json::from_str(&r.context).unwrap_or(serde_json::Value::Null),
            sla_due_at: r.sla_due_at,
            escalated_at: r.escalated_at,
            last_told_position: r.last_told_position.map(i64::from),
            created_at: r.created_at,
            claimed_at: r.claimed_at,
            released_at: r.released_at,
        }
    }
}

const HANDOFF_SELECT: &str = "SELECT h.id, h.tenant_id, h.conversation_id, c.channel, c.contact_id, ct.display_name,
        h.reason, h.detail, h.status, h.claimed_by, h.release_note, h.context, h.sla_due_at,
        h.escalated_at, h.last_told_position, h.created_at, h.claimed_at, h.released_at
    FROM handoffs h JOIN conversations c ON c.id = h.conversation_id JOIN contacts ct ON ct.id = c.contact_id";

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// Someone else (or the same person) got there first.
    AlreadyClaimed {
        by: Option<String>,
    },
    /// Released already, or never existed.
    NotOpen,
}

/// Opens a handoff inside a transaction (the completion's). Evaluates to `Result<(), sqlx::Error>`.
macro_rules! insert_handoff {
    ($tx:expr, $tenant:expr, $conversation:expr, $handoff:expr, $now:expr) => {{
        let h: &$crate::store::NewHandoff = $handoff;
        async {
            let opened = sqlx::query(
                "INSERT INTO handoffs (id, tenant_id, conversation_id, reason, detail, status, context, sla_due_at, last_told_position, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'waiting', $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(&h.id)
            .bind($tenant)
            .bind($conversation)
            .bind(&h.reason)
            .bind(h.detail.as_deref())
            .bind(h.context.to_string())
            .bind(h.sla_due_at)
            .bind(h.told_position as i32)
            .bind($now)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if opened == 1 {
                sqlx::query("UPDATE conversations SET state = 'queued' WHERE id = $1 AND state = 'bot'")
                    .bind($conversation)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await
    }};
}
pub(crate) use insert_handoff;

impl Store {
    /// Handoffs waiting for a person in a tenant, created at or before `created_at`: the queue
    /// position of one created then (ties by id).
    pub async fn waiting_ahead(
        &self,
        tenant: &TenantId,
        created_at: i64,
    ) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM handoffs WHERE tenant_id = $1 AND status = 'waiting' AND created_at <= $2",
            )
            .bind(tenant.as_str())
            .bind(created_at)
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// Open handoffs (waiting, then claimed), oldest first; `None` tenant means all.
    pub async fn open_handoffs(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<HandoffRecord>, StoreError> {
        let sql = format!(
            "{HANDOFF_SELECT} WHERE ($1 IS NULL OR h.tenant_id = $1) AND h.status IN ('waiting', 'claimed')
             ORDER BY h.created_at, h.id"
        );
        let rows: Vec<HandoffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(tenant.map(|t| t.as_str()))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(HandoffRecord::from).collect())
    }

    pub async fn handoff(&self, id: &str) -> Result<Option<HandoffRecord>, StoreError> {
        let sql = format!("{HANDOFF_SELECT} WHERE h.id = $1");
        let row: Option<HandoffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(HandoffRecord::from))
    }

    /// The conversation's open handoff, if any.
    pub async fn open_handoff_of(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<HandoffRecord>, StoreError> {
        let sql = format!(
            "{HANDOFF_SELECT} WHERE h.conversation_id = $1 AND h.status IN ('waiting', 'claimed')"
        );
        let row: Option<HandoffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(conversation.to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(HandoffRecord::from))
    }

    /// Whether the conversation was ever handed off for `reason` (open or not).
    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %conversation))]
    pub async fn was_handed_off_for(
        &self,
        conversation: ConversationId,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM handoffs WHERE conversation_id = $1 AND reason = $2",
            )
            .bind(conversation.to_string())
            .bind(reason)
            .fetch_one(pool)
            .await?
        });
        Ok(n > 0)
    }

    /// Claims a waiting handoff for `staff_id`: exactly one concurrent claim wins.
    pub async fn claim_handoff(
        &self,
        id: &str,
        staff_id: &str,
        now: i64,
    ) -> Result<ClaimOutcome, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let claimed: Option<(String,)> = sqlx::query_as(
                "UPDATE handoffs SET status = 'claimed', claimed_by = $1, claimed_at = $2
                 WHERE id = $3 AND status = 'waiting' RETURNING conversation_id",
            )
            .bind(staff_id)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((conversation,)) = claimed else {
                tx.rollback().await?;
                let current: Option<(String, Option<String>)> =
                    sqlx::query_as("SELECT status, claimed_by FROM handoffs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(pool)
                        .await?;
                return Ok(match current {
                    Some((status, by)) if status == "claimed" => {
                        ClaimOutcome::AlreadyClaimed { by }
                    }
                    _ => ClaimOutcome::NotOpen,
                });
            };
            sqlx::query("UPDATE conversations SET state = 'human', updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&conversation)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(ClaimOutcome::Claimed)
        })
    }

    /// Ends an open handoff and gives the conversation back to the bot. `false` when it was not
    /// open.
    pub async fn release_handoff(
        &self,
        id: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let released: Option<(String,)> = sqlx::query_as(
                "UPDATE handoffs SET status = 'released', release_note = $1, released_at = $2
                 WHERE id = $3 AND status IN ('waiting', 'claimed') RETURNING conversation_id",
            )
            .bind(note)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((conversation,)) = released else {
                tx.rollback().await?;
                return Ok(false);
            };
            sqlx::query("UPDATE conversations SET state = 'bot', updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&conversation)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Waiting handoffs whose SLA passed and that were not escalated yet.
    pub async fn handoffs_past_sla(&self, now: i64) -> Result<Vec<HandoffRecord>, StoreError> {
        let sql = format!(
            "{HANDOFF_SELECT} WHERE h.status = 'waiting' AND h.escalated_at IS NULL AND h.sla_due_at <= $1
             ORDER BY h.created_at LIMIT 100"
        );
        let rows: Vec<HandoffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(now).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(HandoffRecord::from).collect())
    }

    /// Marks a handoff escalated; `false` if another replica did it first.
    pub async fn mark_escalated(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, Db| {
            sqlx::query("UPDATE handoffs SET escalated_at = $1 WHERE id = $2 AND escalated_at IS NULL AND status = 'waiting'")
                .bind(now)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records the position the prospect was last told.
    pub async fn set_told_position(&self, id: &str, position: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query("UPDATE handoffs SET last_told_position = $1 WHERE id = $2")
                .bind(position as i32)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
