//! Reading conversations and their messages, for workers and the conversation API.

use super::records::{ConversationRow, MessageRow, convert};
use super::{ConversationRecord, MessageRecord, Store, StoreError, on_pool};
use crate::domain::{ConversationId, MessageId, TenantId};

const CONVERSATION_COLUMNS: &str = "c.id, c.tenant_id, c.contact_id, c.channel, c.state, ct.address, ct.display_name, c.created_at, c.updated_at";
const MESSAGE_COLUMNS: &str = "id, conversation_id, direction, author, kind, body, status, intent, confidence, error_code, purpose, gate_reason, agent, confidence_factors, sources, created_at, updated_at";

impl Store {
    /// One conversation with its contact.
    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %id))]
    pub async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE c.id = $1"
        );
        let row: Option<ConversationRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(ConversationRecord::try_from).transpose()
    }

    /// Conversations, most recently active first, optionally of one tenant.
    pub async fn list_conversations(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
             WHERE ($1 IS NULL OR c.tenant_id = $1)
             ORDER BY c.updated_at DESC, c.id LIMIT $2"
        );
        let rows: Vec<ConversationRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(tenant.map(|t| t.as_str()))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        convert(rows)
    }

    /// A conversation's messages in the order they were recorded (at most `limit`, the latest).
    pub async fn list_messages(
        &self,
        conversation: ConversationId,
        limit: i64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM (
                SELECT seq, {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1
                ORDER BY seq DESC LIMIT $2) latest
             ORDER BY seq"
        );
        let rows: Vec<MessageRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(conversation.to_string())
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        convert(rows)
    }

    /// One message.
    pub async fn message(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let row: Option<MessageRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(MessageRecord::try_from).transpose()
    }

    /// Several messages in one round trip, in no particular order; ids not found are left out.
    pub async fn messages(&self, ids: &[MessageId]) -> Result<Vec<MessageRecord>, StoreError> {
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::inbound::ROWS_PER_STATEMENT) {
            let rows: Vec<MessageRow> = on_pool!(self, |pool, Db| {
                let mut select = sqlx::QueryBuilder::<Db>::new(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ("
                ));
                let mut list = select.separated(", ");
                for id in chunk {
                    list.push_bind(id.to_string());
                }
                select.push(")");
                select.build_query_as().fetch_all(pool).await?
            });
            records.extend(convert::<MessageRow, MessageRecord>(rows)?);
        }
        Ok(records)
    }
}
