//! Records the channels beyond WhatsApp Cloud need: email threading metadata, webhook tokens
//! remembered for replay protection, and provider session states. Shared by every replica.

use super::{Store, StoreError, on_pool};
use crate::domain::{Channel, ConversationId, TenantId};

/// One email as threading needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRecord {
    pub tenant: TenantId,
    /// The RFC Message-ID without angle brackets.
    pub message_id: String,
    pub conversation_id: ConversationId,
    pub thread: String,
    pub inbound: bool,
    pub subject: Option<String>,
    /// The References chain, ids without angle brackets, oldest first.
    pub references: Vec<String>,
    /// Attachment metadata as JSON.
    pub attachments: String,
    pub created_at: i64,
}

/// A provider session's last reported state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub tenant: TenantId,
    pub session: String,
    pub status: String,
    pub updated_at: i64,
}

type EmailRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
);

fn email_from_row(row: EmailRow) -> Result<EmailRecord, StoreError> {
    let (tenant, message_id, conversation, thread, direction, subject, refs, attachments, at) = row;
    Ok(EmailRecord {
        tenant: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
        message_id,
        conversation_id: ConversationId(super::records::parse_uuid(&conversation)?),
        thread,
        inbound: direction == "inbound",
        subject,
        references: refs
            .split_whitespace()
            .map(|r| r.trim_matches(['<', '>']).to_owned())
            .collect(),
        attachments,
        created_at: at,
    })
}

const EMAIL_COLUMNS: &str = "tenant_id, message_id, conversation_id, thread, direction, subject, refs, attachments, created_at";

impl Store {
    /// Remembers an email (idempotent on tenant and Message-ID).
    pub async fn record_email(&self, email: &EmailRecord) -> Result<(), StoreError> {
        let refs = email
            .references
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(" ");
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO email_messages (tenant_id, message_id, conversation_id, thread, direction, subject, refs, attachments, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(email.tenant.as_str())
            .bind(&email.message_id)
            .bind(email.conversation_id.to_string())
            .bind(&email.thread)
            .bind(if email.inbound { "inbound" } else { "outbound" })
            .bind(email.subject.as_deref())
            .bind(refs)
            .bind(&email.attachments)
            .bind(email.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The thread of the first of `message_ids` Parley knows (received or sent), if any.
    pub async fn email_thread_of(
        &self,
        tenant: &TenantId,
        message_ids: &[String],
    ) -> Result<Option<String>, StoreError> {
        for id in message_ids {
            let row: Option<(String,)> = on_pool!(self, |pool, Db| {
                sqlx::query_as(
                    "SELECT thread FROM email_messages WHERE tenant_id = $1 AND message_id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(pool)
                .await?
            });
            if let Some((thread,)) = row {
                return Ok(Some(thread));
            }
        }
        Ok(None)
    }

    /// The thread key of a conversation of `tenant` on `channel` (plus-addressing fallback).
    pub async fn conversation_thread(
        &self,
        tenant: &TenantId,
        channel: Channel,
        conversation: ConversationId,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT thread FROM conversations WHERE id = $1 AND tenant_id = $2 AND channel = $3",
            )
            .bind(conversation.to_string())
            .bind(tenant.as_str())
            .bind(channel.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(t,)| t))
    }

    /// The conversation's most recent email from the prospect: what a reply answers.
    pub async fn latest_inbound_email(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<EmailRecord>, StoreError> {
        let sql = format!(
            "SELECT {EMAIL_COLUMNS} FROM email_messages
             WHERE conversation_id = $1 AND direction = 'inbound'
             ORDER BY created_at DESC, message_id DESC LIMIT 1"
        );
        let row: Option<EmailRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(conversation.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(email_from_row).transpose()
    }

    /// Claims a signed webhook's token until `expires_at`; `false` when it was already seen (a
    /// replay). Expired tokens are forgotten on the way.
    pub async fn claim_webhook_token(
        &self,
        tenant: &TenantId,
        provider: &str,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO webhook_tokens (tenant_id, provider, token, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(provider)
            .bind(token)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM webhook_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(inserted == 1)
        })
    }

    /// Forgets a claimed token (its delivery could not be recorded, so its retry must pass).
    pub async fn release_webhook_token(
        &self,
        provider: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query("DELETE FROM webhook_tokens WHERE provider = $1 AND token = $2")
                .bind(provider)
                .bind(token)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the state a provider reported for a session.
    pub async fn set_session_state(
        &self,
        channel: Channel,
        state: &SessionState,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO channel_sessions (tenant_id, channel, session, status, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, channel, session)
                 DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            )
            .bind(state.tenant.as_str())
            .bind(channel.as_str())
            .bind(&state.session)
            .bind(&state.status)
            .bind(state.updated_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every session's last state on `channel`.
    pub async fn session_states(&self, channel: Channel) -> Result<Vec<SessionState>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT tenant_id, session, status, updated_at FROM channel_sessions
                 WHERE channel = $1 ORDER BY tenant_id, session",
            )
            .bind(channel.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(tenant, session, status, updated_at)| {
                Ok(SessionState {
                    tenant: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
                    session,
                    status,
                    updated_at,
                })
            })
            .collect()
    }
}
