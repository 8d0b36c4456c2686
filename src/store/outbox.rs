//! The outbound outbox: queued messages are claimed by senders with a lease, delivered, and marked
//! sent, retried later or failed. Only the oldest queued message of a conversation can be claimed,
//! so replies leave in order even when one of them is being retried; a proactive message the
//! consent gate deferred for quiet hours is the exception (it must not hold back a reply or an
//! opt-out confirmation). A claim whose lease expired (its sender died during the provider call) is
//! claimed again: that is the one window in which a message can be sent twice, and
//! `OutboundJob::previous_attempt_vanished` lets the caller count it.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::QueryBuilder;
use uuid::Uuid;

use super::records::{parse_channel, parse_uuid};
use super::{Store, StoreError, on_pool};
use crate::consent::Purpose;
use crate::domain::{
    Channel, ContactId, ConversationId, DeliveryStatus, MessageId, ProviderMessageId, TenantId,
};

/// An outbound message claimed for delivery.
#[derive(Debug, Clone)]
pub struct OutboundJob {
    pub id: MessageId,
    pub tenant: TenantId,
    pub conversation_id: ConversationId,
    pub channel: Channel,
    /// The recipient's address. Personal data: never log it.
    pub address: String,
    pub text: String,
    /// Attempts including this one.
    pub attempts: i32,
    /// An earlier claim ended without a recorded outcome: its sender died mid-call.
    pub previous_attempt_vanished: bool,
    /// The contact it goes to (for the consent gate).
    pub contact_id: ContactId,
    /// Why it is sent (reply, proactive, opt-out confirmation).
    pub purpose: Purpose,
    /// The approved template it uses, as stored (`{"name","language","params"}`).
    pub template: Option<serde_json::Value>,
}

/// A delivery receipt recorded before its message was marked sent.
#[derive(sqlx::FromRow)]
struct EarlyReceipt {
    tenant_id: String,
    channel: String,
    provider_message_id: String,
    status: String,
    status_rank: i32,
    error_code: Option<i64>,
    error_title: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    tenant_id: String,
    conversation_id: String,
    channel: String,
    address: String,
    body: Option<String>,
    attempts: i32,
    error_detail: Option<String>,
    contact_id: Option<String>,
    purpose: Option<String>,
    template: Option<String>,
}

/// Why a delivery attempt did not succeed, as recorded on the message.
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub code: Option<i64>,
    pub detail: String,
}

/// A message its provider accepted, to record as sent.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: MessageId,
    /// The provider's id for it; `None` for channels without one (the web channel).
    pub provider_id: Option<ProviderMessageId>,
    pub status: DeliveryStatus,
}

const CLAIM_CANDIDATES: &str = "
    SELECT m.seq FROM messages m
    WHERE m.direction = 'outbound' AND m.status = 'queued'
      AND m.next_attempt_at <= $2
      AND (m.lease_until IS NULL OR m.lease_until < $2)
      AND NOT EXISTS (
          SELECT 1 FROM messages p
          WHERE p.conversation_id = m.conversation_id AND p.direction = 'outbound'
            AND p.status = 'queued' AND p.seq < m.seq
            -- a message held for quiet hours does not hold back the ones after it
            AND (p.gate_reason IS NULL OR p.gate_reason <> 'quiet_hours' OR p.next_attempt_at <= $2))
    ORDER BY m.seq
    LIMIT $3";

/// A queued outbound message that holds its conversation's queue: anything but a message held for
/// quiet hours whose time has not come.
const HOLDS_THE_QUEUE: &str = "h.direction = 'outbound' AND h.status = 'queued'
    AND (h.gate_reason IS NULL OR h.gate_reason <> 'quiet_hours' OR h.next_attempt_at <= $2)";

/// The same candidates on PostgreSQL, found from the conversations' heads instead of from every
/// queued row: a recursive skip scan over `messages_outbox_by_conversation` steps from one
/// conversation to the next (one index descent each) and takes the first message holding its
/// queue, until it has `$3` due, unleased heads. The walk starts at a random conversation id
/// (`$4`) and wraps around, so every conversation gets its turn however long the backlog. With a
/// deep backlog in a few conversations the plain query probed every queued row on every claim, and
/// claims were most of the database's work; with many shallow conversations the walk stops as
/// soon as it has enough heads. The conditions on `m` are evaluated on the row itself so that
/// PostgreSQL re-checks them on the newest version when it locks a row another sender just
/// claimed.
static POSTGRES_CLAIM_CANDIDATES: LazyLock<String> = LazyLock::new(|| {
    let head = |bound: &str| {
        format!(
            "SELECT h.conversation_id, h.seq, h.next_attempt_at, h.lease_until FROM messages h
             WHERE {HOLDS_THE_QUEUE} AND {bound}
             ORDER BY h.conversation_id, h.seq LIMIT 1"
        )
    };
    format!(
        "SELECT m.seq FROM messages m
         WHERE m.seq IN (
             WITH RECURSIVE
               from_start (conversation_id, seq, next_attempt_at, lease_until) AS (
                 ({first_from_start})
                 UNION ALL
                 SELECT next.* FROM from_start, LATERAL ({next_from_start}) next),
               wrapped (conversation_id, seq, next_attempt_at, lease_until) AS (
                 ({first_wrapped})
                 UNION ALL
                 SELECT next.* FROM wrapped, LATERAL ({next_wrapped}) next)
             SELECT heads.seq FROM (SELECT * FROM from_start UNION ALL SELECT * FROM wrapped) heads
             WHERE heads.next_attempt_at <= $2
               AND (heads.lease_until IS NULL OR heads.lease_until < $2)
             LIMIT $3)
           AND m.direction = 'outbound' AND m.status = 'queued'
           AND m.next_attempt_at <= $2
           AND (m.lease_until IS NULL OR m.lease_until < $2)
         ORDER BY m.seq
         LIMIT $3",
        first_from_start = head("h.conversation_id >= $4"),
        next_from_start = head("h.conversation_id > from_start.conversation_id"),
        first_wrapped = head("h.conversation_id < $4"),
        next_wrapped =
            head("h.conversation_id > wrapped.conversation_id AND h.conversation_id < $4"),
    )
});

const CLAIM_RETURNING: &str = " RETURNING id, tenant_id, conversation_id, channel, address, body, attempts, error_detail, purpose, template,
    (SELECT c.contact_id FROM conversations c WHERE c.id = messages.conversation_id) AS contact_id";

impl Store {
    /// Claims up to `limit` due outbound messages (at most one per conversation) for `lease_ms`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn claim_outbound(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboundJob>, StoreError> {
        let update = "UPDATE messages SET lease_until = $1, attempts = attempts + 1 WHERE seq IN (";
        let rows: Vec<JobRow> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_as(&format!("{update}{CLAIM_CANDIDATES}){CLAIM_RETURNING}"))
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            // Two senders must never take the same message.
            Store::Postgres(pool) => {
                sqlx::query_as(&format!(
                    "{update}{} FOR UPDATE OF m SKIP LOCKED){CLAIM_RETURNING}",
                    *POSTGRES_CLAIM_CANDIDATES
                ))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .bind(Uuid::new_v4().to_string())
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|row| {
                Ok(OutboundJob {
                    id: MessageId(parse_uuid(&row.id)?),
                    tenant: TenantId::parse(&row.tenant_id).map_err(StoreError::Corrupt)?,
                    conversation_id: ConversationId(parse_uuid(&row.conversation_id)?),
                    channel: parse_channel(&row.channel)?,
                    address: row.address,
                    text: row.body.unwrap_or_default(),
                    attempts: row.attempts,
                    previous_attempt_vanished: row.attempts > 1 && row.error_detail.is_none(),
                    contact_id: ContactId(parse_uuid(row.contact_id.as_deref().ok_or_else(
                        || StoreError::Corrupt("an outbound message without a conversation".into()),
                    )?)?),
                    // Rows from before purposes were recorded are bot replies.
                    purpose: row
                        .purpose
                        .as_deref()
                        .map(|p| {
                            Purpose::parse(p)
                                .ok_or_else(|| StoreError::Corrupt(format!("purpose `{p}`")))
                        })
                        .transpose()?
                        .unwrap_or(Purpose::Reply),
                    template: row
                        .template
                        .as_deref()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("template: {e}")))?,
                })
            })
            .collect()
    }

    /// The provider accepted the message: record its id and apply receipts that came early.
    /// Channels without provider receipts (the web channel) pass `Delivered` and no id.
    pub async fn mark_sent(
        &self,
        id: MessageId,
        provider_id: Option<&ProviderMessageId>,
        status: DeliveryStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        self.mark_sent_many(
            &[Accepted {
                id,
                provider_id: provider_id.cloned(),
                status,
            }],
            now,
        )
        .await
    }

    /// [`Store::mark_sent`] for several messages in one transaction: the sender records a
    /// round of sends with one commit rather than one each.
    #[tracing::instrument(level = "debug", skip_all, fields(messages = accepted.len()))]
    pub async fn mark_sent_many(&self, accepted: &[Accepted], now: i64) -> Result<(), StoreError> {
        if accepted.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            for chunk in accepted.chunks(super::inbound::ROWS_PER_STATEMENT) {
                // One UPDATE for the chunk (both dialects name a VALUES list's columns
                // column1, column2, ...).
                let mut update = QueryBuilder::<Db>::new(
                    "UPDATE messages
                     SET status = v.new_status, status_rank = v.new_rank,
                         provider_message_id = v.new_provider_id, lease_until = NULL,
                         error_code = NULL, error_detail = NULL, updated_at = ",
                );
                update.push_bind(now);
                update.push(
                    " FROM (SELECT column1 AS new_id, column2 AS new_status, column3 AS new_rank,
                                   column4 AS new_provider_id FROM (",
                );
                update.push_values(chunk, |mut row, sent| {
                    row.push_bind(sent.id.to_string())
                        .push_bind(sent.status.as_str())
                        .push_bind(sent.status.rank() as i32)
                        .push_bind(sent.provider_id.as_ref().map(|p| p.as_str().to_owned()));
                });
                update.push(
                    ") AS listed) AS v
                     WHERE messages.id = v.new_id AND messages.status = 'queued'
                     RETURNING id, tenant_id, channel, provider_message_id",
                );
                let sent: Vec<(String, String, String, Option<String>)> =
                    update.build_query_as().fetch_all(&mut *tx).await?;
                let with_provider_id: Vec<(String, String, String, String)> = sent
                    .into_iter()
                    .filter_map(|(id, tenant, channel, provider)| {
                        provider.map(|provider| (id, tenant, channel, provider))
                    })
                    .collect();
                if with_provider_id.is_empty() {
                    continue;
                }
                // Receipts that arrived before the send was recorded (the provider can be
                // faster than our commit), applied now: the highest state wins.
                let mut select = QueryBuilder::<Db>::new(
                    "SELECT tenant_id, channel, provider_message_id, status, status_rank, error_code, error_title
                     FROM delivery_receipts WHERE (tenant_id, channel, provider_message_id) IN (",
                );
                select.push_values(
                    &with_provider_id,
                    |mut row, (_, tenant, channel, provider)| {
                        row.push_bind(tenant.as_str())
                            .push_bind(channel.as_str())
                            .push_bind(provider.as_str());
                    },
                );
                select.push(")");
                let early: Vec<EarlyReceipt> = select.build_query_as().fetch_all(&mut *tx).await?;
                let mut best: HashMap<(&str, &str, &str), &EarlyReceipt> = HashMap::new();
                for receipt in &early {
                    let key = (
                        receipt.tenant_id.as_str(),
                        receipt.channel.as_str(),
                        receipt.provider_message_id.as_str(),
                    );
                    let entry = best.entry(key).or_insert(receipt);
                    if receipt.status_rank > entry.status_rank {
                        *entry = receipt;
                    }
                }
                for (id, tenant, channel, provider) in &with_provider_id {
                    let Some(receipt) =
                        best.get(&(tenant.as_str(), channel.as_str(), provider.as_str()))
                    else {
                        continue;
                    };
                    sqlx::query(
                        "UPDATE messages SET status = $1, status_rank = $2,
                             error_code = COALESCE($3, error_code), error_detail = COALESCE($4, error_detail)
                         WHERE id = $5 AND status_rank < $2",
                    )
                    .bind(&receipt.status)
                    .bind(receipt.status_rank)
                    .bind(receipt.error_code)
                    .bind(&receipt.error_title)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The attempt failed in a way worth retrying: queue it again for `next_attempt_at`.
    pub async fn schedule_retry(
        &self,
        id: MessageId,
        next_attempt_at: i64,
        failure: &SendFailure,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE messages SET next_attempt_at = $1, lease_until = NULL, error_code = $2,
                     error_detail = $3, updated_at = $4
                 WHERE id = $5 AND status = 'queued'",
            )
            .bind(next_attempt_at)
            .bind(failure.code)
            .bind(&failure.detail)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The message cannot be delivered: mark it failed with the reason.
    pub async fn mark_failed(
        &self,
        id: MessageId,
        failure: &SendFailure,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE messages SET status = 'failed', status_rank = $1, lease_until = NULL,
                     error_code = $2, error_detail = $3, updated_at = $4
                 WHERE id = $5 AND status = 'queued'",
            )
            .bind(DeliveryStatus::Failed.rank() as i32)
            .bind(failure.code)
            .bind(&failure.detail)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Outbound messages queued and not yet delivered, for the queue-depth metric.
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND status = 'queued'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }
}
