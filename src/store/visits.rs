//! Visit requests: the slot a prospect picked from the scheduling agent's offer.

use super::{Store, StoreError, on_pool};
use crate::domain::{ContactId, ConversationId, MessageId, TenantId};

/// A requested visit as listed for staff.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VisitRequest {
    pub id: String,
    pub conversation_id: String,
    pub contact_id: String,
    pub slot_at: i64,
    pub status: String,
    pub created_at: i64,
}

impl Store {
    /// Records the pick; the inbound message id makes a replay record it once.
    pub async fn record_visit_request(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        contact: ContactId,
        slot_at: i64,
        message: MessageId,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO visit_requests (id, tenant_id, conversation_id, contact_id, slot_at, message_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant.as_str())
            .bind(conversation.to_string())
            .bind(contact.to_string())
            .bind(slot_at)
            .bind(message.to_string())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A conversation's visit requests, soonest first.
    pub async fn visit_requests(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<VisitRequest>, StoreError> {
        let rows: Vec<(String, String, String, i64, String, i64)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT id, conversation_id, contact_id, slot_at, status, created_at FROM visit_requests
                 WHERE conversation_id = $1 ORDER BY slot_at",
            )
            .bind(conversation.to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, conversation_id, contact_id, slot_at, status, created_at)| VisitRequest {
                    id,
                    conversation_id,
                    contact_id,
                    slot_at,
                    status,
                    created_at,
                },
            )
            .collect())
    }
}
