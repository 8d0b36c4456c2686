//! Delivery receipts. Providers send statuses more than once, skip steps and deliver them out of
//! order, sometimes before the send call that created the message has returned. Every receipt is
//! kept once (keyed by provider id and status), and a message's status only moves forward:
//! `sent < delivered < read < played`, with `failed` terminal and keeping its error code. When a
//! send completes, receipts that arrived early are applied to it.

use super::{Store, StoreError, on_pool};
use crate::domain::{ConversationId, MessageId, StatusUpdate};

/// Records one status and moves the message forward; evaluates to the changed messages as
/// `Vec<(ConversationId, MessageId)>`. A macro so it runs inside callers' transactions on either
/// backend.
macro_rules! apply_status {
    ($conn:expr, $status:expr, $now:expr) => {{
        let status: &$crate::domain::StatusUpdate = $status;
        let (code, title) = match &status.error {
            Some(e) => (Some(e.code), e.title.clone()),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO delivery_receipts (tenant_id, channel, provider_message_id, status, status_rank, error_code, error_title, reported_at, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(status.tenant.as_str())
        .bind(status.channel.as_str())
        .bind(status.provider_message_id.as_str())
        .bind(status.status.as_str())
        .bind(status.status.rank() as i32)
        .bind(code)
        .bind(title.as_deref())
        .bind(status.at_ms)
        .bind($now)
        .execute(&mut *$conn)
        .await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "UPDATE messages
             SET status = $1, status_rank = $2, error_code = COALESCE($3, error_code),
                 error_detail = COALESCE($4, error_detail), updated_at = $5
             WHERE tenant_id = $6 AND channel = $7 AND provider_message_id = $8
               AND direction = 'outbound' AND status_rank < $2
             RETURNING conversation_id, id",
        )
        .bind(status.status.as_str())
        .bind(status.status.rank() as i32)
        .bind(code)
        .bind(title.as_deref())
        .bind($now)
        .bind(status.tenant.as_str())
        .bind(status.channel.as_str())
        .bind(status.provider_message_id.as_str())
        .fetch_all(&mut *$conn)
        .await?;
        rows.into_iter()
            .map(|(c, m)| {
                Ok::<_, $crate::store::StoreError>((
                    $crate::domain::ConversationId($crate::store::records::parse_uuid(&c)?),
                    $crate::domain::MessageId($crate::store::records::parse_uuid(&m)?),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?
    }};
}
pub(crate) use apply_status;

impl Store {
    /// Records provider statuses outside a webhook batch.
    pub async fn apply_statuses(
        &self,
        statuses: &[StatusUpdate],
        now: i64,
    ) -> Result<Vec<(ConversationId, MessageId)>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let mut changed = Vec::new();
            for status in statuses {
                changed.extend(apply_status!(&mut *tx, status, now));
            }
            tx.commit().await?;
            Ok(changed)
        })
    }
}
