//! Consent records: appending to the ledger (never updating it), reading a contact's current
//! consent and history, the audit export, the facts the outbound gate decides on, outbound
//! messages queued by staff and integrations, and erasing a contact's personal data (its lead and
//! lead history, pending CRM jobs, conversations, messages and handoffs).

use super::records::parse_uuid;
use super::{Store, StoreError, on_pool};
use crate::consent::{ConsentAction, ConsentEvent, NewConsentEvent};
use crate::domain::{Channel, ContactId, ConversationId, MessageId, TenantId};

/// Appends one event and remembers which contact its subject names, on any executor (a pool or
/// an open transaction). Evaluates to `Result<(), sqlx::Error>`.
macro_rules! insert_consent_event {
    ($executor:expr, $subject:expr, $event:expr) => {{
        let event: &$crate::consent::NewConsentEvent = $event;
        let subject: &str = $subject;
        async {
            sqlx::query(
                "INSERT INTO consent_events (id, tenant_id, subject, channel, action, source, proof, detail, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(event.tenant.as_str())
            .bind(subject)
            .bind(event.channel.as_str())
            .bind(event.action.as_str())
            .bind(event.source.as_str())
            .bind(event.proof.as_deref())
            .bind(event.detail.as_deref())
            .bind(event.at_ms)
            .execute(&mut *$executor)
            .await?;
            sqlx::query(
                "INSERT INTO consent_subjects (tenant_id, subject, contact_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(event.tenant.as_str())
            .bind(subject)
            .bind(event.contact.to_string())
            .execute(&mut *$executor)
            .await?;
            Ok::<(), sqlx::Error>(())
        }
        .await
    }};
}
pub(crate) use insert_consent_event;

/// A contact as the consent API needs it.
#[derive(Debug, Clone)]
pub struct ContactRecord {
    pub id: ContactId,
    pub tenant: TenantId,
    pub channel: Channel,
    /// Personal data: never log it.
    pub address: String,
    pub display_name: Option<String>,
    pub time_zone: Option<String>,
}

/// What the outbound gate decides on, read in one round trip.
#[derive(Debug, Clone, Default)]
pub struct GateFactsRow {
    pub latest_consent: Option<ConsentAction>,
    pub last_inbound_at: Option<i64>,
    pub recent_proactive: i64,
    pub time_zone: Option<String>,
}

/// The recipient [`Store::gate_facts_many`] is asked about.
#[derive(Debug, Clone, Copy)]
pub struct GateFactsQuery<'a> {
    pub tenant: &'a TenantId,
    /// The contact's name in the ledger.
    pub subject: &'a str,
    pub contact: ContactId,
    pub channel: Channel,
    /// Proactive messages sent from then on are counted.
    pub proactive_since: i64,
}

/// Recipients one gate-facts statement asks about at most (six parameters each).
const GATE_FACTS_PER_STATEMENT: usize = 64;

/// One line of the audit export.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsentExportRow {
    pub id: String,
    pub tenant_id: String,
    pub subject: String,
    /// The contact while it exists; empty once erased.
    pub contact_id: Option<String>,
    pub channel: String,
    pub action: String,
    pub source: String,
    pub proof: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// An outbound message queued by staff or an integration (not a bot reply).
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub id: MessageId,
    pub tenant: TenantId,
    pub conversation: ConversationId,
    pub channel: Channel,
    pub address: String,
    pub author: &'static str,
    pub text: String,
    /// The template as JSON (`{"name","language","params"}`), when one is used.
    pub template: Option<String>,
    pub purpose: &'static str,
    /// `queued` or `blocked`.
    pub status: &'static str,
    pub gate_reason: Option<&'static str>,
    /// When the sender may first try it (later than now when deferred).
    pub next_attempt_at: i64,
    pub now: i64,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    channel: String,
    action: String,
    source: String,
    proof: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    id: String,
    tenant_id: String,
    subject: String,
    contact_id: Option<String>,
    channel: String,
    action: String,
    source: String,
    proof: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

/// What erasing a contact deletes before the contact row, children before parents; each
/// statement takes the contact id as `$1`.
const ERASURE: &[&str] = &[
    "DELETE FROM delivery_receipts WHERE provider_message_id IN (
         SELECT m.provider_message_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE c.contact_id = $1 AND m.direction = 'outbound' AND m.provider_message_id IS NOT NULL)",
    "DELETE FROM lead_history WHERE lead_id IN (SELECT id FROM leads WHERE contact_id = $1)",
    "DELETE FROM crm_outbox WHERE lead_id IN (SELECT id FROM leads WHERE contact_id = $1)",
    "DELETE FROM crm_mappings WHERE lead_id IN (SELECT id FROM leads WHERE contact_id = $1)",
    "DELETE FROM leads WHERE contact_id = $1",
    "DELETE FROM visit_requests WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = $1)",
    "DELETE FROM handoffs WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = $1)",
    "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = $1)",
    "DELETE FROM email_messages WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = $1)",
    "DELETE FROM conversations WHERE contact_id = $1",
    "DELETE FROM consent_subjects WHERE contact_id = $1",
];

impl Store {
    /// The value of a generated secret, creating it with `generated` the first time. Every
    /// replica reads the same value.
    pub async fn secret_value(&self, name: &str, generated: &str) -> Result<String, StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO parley_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(generated)
            .execute(pool)
            .await?;
            let (value,): (String,) =
                sqlx::query_as("SELECT value FROM parley_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(pool)
                    .await?;
            Ok(value)
        })
    }

    /// Appends one event to the ledger.
    #[tracing::instrument(level = "debug", skip_all, fields(action = event.action.as_str(), source = event.source.as_str()))]
    pub async fn append_consent(
        &self,
        subject: &str,
        event: &NewConsentEvent,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            insert_consent_event!(tx, subject, event)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The latest opt-in or opt-out of a subject on a channel.
    pub async fn latest_consent(
        &self,
        tenant: &TenantId,
        subject: &str,
        channel: Channel,
    ) -> Result<Option<ConsentAction>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT action FROM consent_events
                 WHERE tenant_id = $1 AND subject = $2 AND channel = $3 AND action IN ('opt_in', 'opt_out')
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(tenant.as_str())
            .bind(subject)
            .bind(channel.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(|(a,)| parse_action(&a)).transpose()
    }

    /// Every event of a subject, oldest first.
    pub async fn consent_history(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> Result<Vec<ConsentEvent>, StoreError> {
        let rows: Vec<EventRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT id, channel, action, source, proof, detail, created_at FROM consent_events
                 WHERE tenant_id = $1 AND subject = $2 ORDER BY seq",
            )
            .bind(tenant.as_str())
            .bind(subject)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| ConsentEvent {
                id: r.id,
                channel: r.channel,
                action: r.action,
                source: r.source,
                proof: r.proof,
                detail: r.detail,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Ledger events recorded at or after `since`, oldest first, for audits.
    pub async fn consent_export(
        &self,
        tenant: Option<&TenantId>,
        since: i64,
    ) -> Result<Vec<ConsentExportRow>, StoreError> {
        let rows: Vec<ExportRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT e.id, e.tenant_id, e.subject, s.contact_id, e.channel, e.action, e.source,
                        e.proof, e.detail, e.created_at
                 FROM consent_events e
                 LEFT JOIN consent_subjects s ON s.tenant_id = e.tenant_id AND s.subject = e.subject
                 WHERE ($1 IS NULL OR e.tenant_id = $1) AND e.created_at >= $2
                 ORDER BY e.seq",
            )
            .bind(tenant.map(|t| t.as_str()))
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| ConsentExportRow {
                id: r.id,
                tenant_id: r.tenant_id,
                subject: r.subject,
                contact_id: r.contact_id,
                channel: r.channel,
                action: r.action,
                source: r.source,
                proof: r.proof,
                detail: r.detail,
                created_at: r.created_at,
            })
            .collect())
    }

    /// What the gate needs about a contact: its latest consent on the channel, when it last
    /// wrote, how many proactive messages it was sent since `proactive_since`, its time zone.
    pub async fn gate_facts(
        &self,
        tenant: &TenantId,
        subject: &str,
        contact: ContactId,
        channel: Channel,
        proactive_since: i64,
    ) -> Result<GateFactsRow, StoreError> {
        let query = GateFactsQuery {
            tenant,
            subject,
            contact,
            channel,
            proactive_since,
        };
        let mut rows = self.gate_facts_many(&[query]).await?;
        rows.pop()
            .ok_or_else(|| StoreError::Corrupt("no gate facts returned".into()))
    }

    /// [`Store::gate_facts`] for several recipients in one round trip, in the order asked.
    /// It runs before every send, so each part is an index probe: the latest inbound message is
    /// taken per conversation (one backward step in its index), not by reading all of them.
    pub async fn gate_facts_many(
        &self,
        queries: &[GateFactsQuery<'_>],
    ) -> Result<Vec<GateFactsRow>, StoreError> {
        let mut facts = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(GATE_FACTS_PER_STATEMENT) {
            let rows: Vec<(i64, Option<String>, Option<i64>, i64, Option<String>)> = on_pool!(
                self,
                |pool, Db| {
                    let mut statement = sqlx::QueryBuilder::<Db>::new(
                        "WITH asked (n, tenant_id, subject, contact_id, channel, proactive_since) AS (",
                    );
                    let contacts: Vec<String> =
                        chunk.iter().map(|q| q.contact.to_string()).collect();
                    statement.push_values(
                        chunk.iter().zip(&contacts).enumerate(),
                        |mut row, (n, (q, contact))| {
                            row.push_bind(n as i64)
                                .push_bind(q.tenant.as_str())
                                .push_bind(q.subject)
                                .push_bind(contact.as_str())
                                .push_bind(q.channel.as_str())
                                .push_bind(q.proactive_since);
                        },
                    );
                    statement.push(
                        ")
                         SELECT asked.n,
                           (SELECT action FROM consent_events e
                             WHERE e.tenant_id = asked.tenant_id AND e.subject = asked.subject
                               AND e.channel = asked.channel AND e.action IN ('opt_in', 'opt_out')
                             ORDER BY e.seq DESC LIMIT 1),
                           (SELECT MAX((SELECT MAX(m.created_at) FROM messages m
                                         WHERE m.conversation_id = c.id AND m.direction = 'inbound'))
                              FROM conversations c WHERE c.contact_id = asked.contact_id),
                           (SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                             WHERE c.contact_id = asked.contact_id AND m.direction = 'outbound'
                               AND m.purpose = 'proactive' AND m.status IN ('sent', 'delivered', 'read', 'played')
                               AND m.updated_at >= asked.proactive_since),
                           (SELECT time_zone FROM contacts WHERE id = asked.contact_id)
                         FROM asked ORDER BY asked.n",
                    );
                    statement.build_query_as().fetch_all(pool).await?
                }
            );
            if rows.len() != chunk.len() || rows.iter().enumerate().any(|(i, r)| r.0 != i as i64) {
                return Err(StoreError::Corrupt(
                    "gate facts do not match the recipients asked".into(),
                ));
            }
            for row in rows {
                facts.push(GateFactsRow {
                    latest_consent: row.1.as_deref().map(parse_action).transpose()?,
                    last_inbound_at: row.2,
                    recent_proactive: row.3,
                    time_zone: row.4,
                });
            }
        }
        Ok(facts)
    }

    /// One contact.
    pub async fn contact(&self, id: ContactId) -> Result<Option<ContactRecord>, StoreError> {
        let row: Option<(
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        )> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                    "SELECT id, tenant_id, channel, address, display_name, time_zone FROM contacts WHERE id = $1",
                )
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(|(id, tenant, channel, address, display_name, time_zone)| {
            Ok(ContactRecord {
                id: ContactId(parse_uuid(&id)?),
                tenant: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
                channel: super::records::parse_channel(&channel)?,
                address,
                display_name,
                time_zone,
            })
        })
        .transpose()
    }

    /// Sets the contact's time zone (an IANA name the caller has checked).
    pub async fn set_contact_time_zone(
        &self,
        id: ContactId,
        time_zone: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, Db| {
            sqlx::query("UPDATE contacts SET time_zone = $1, updated_at = $2 WHERE id = $3")
                .bind(time_zone)
                .bind(now)
                .bind(id.to_string())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// When Parley last recorded a message from the prospect in a conversation.
    pub async fn last_inbound_at(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<i64>, StoreError> {
        let (at,): (Option<i64>,) = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT MAX(created_at) FROM messages WHERE conversation_id = $1 AND direction = 'inbound'",
            )
            .bind(conversation.to_string())
            .fetch_one(pool)
            .await?
        });
        Ok(at)
    }

    /// Writes a staff or integration message to the outbox (or records it blocked).
    pub async fn enqueue_outbound(&self, message: &NewOutbound) -> Result<(), StoreError> {
        let content = serde_json::json!({"type": "text", "body": message.text}).to_string();
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction, author, kind, address, body, content, sent_at, part, status, status_rank, attempts, next_attempt_at, purpose, template, gate_reason, error_detail, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'outbound', $5, $6, $7, $8, $9, $10, 0, $11, $12, 0, $13, $14, $15, $16, $17, $10, $10)",
            )
            .bind(message.id.to_string())
            .bind(message.tenant.as_str())
            .bind(message.conversation.to_string())
            .bind(message.channel.as_str())
            .bind(message.author)
            .bind(if message.template.is_some() { "template" } else { "text" })
            .bind(&message.address)
            .bind(&message.text)
            .bind(content)
            .bind(message.now)
            .bind(message.status)
            .bind(if message.status == "blocked" { 9_i32 } else { 0 })
            .bind(message.next_attempt_at)
            .bind(message.purpose)
            .bind(message.template.as_deref())
            .bind(message.gate_reason)
            .bind(message.gate_reason.map(|_| "refused by the consent gate"))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
                .bind(message.now)
                .bind(message.conversation.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The gate deferred a claimed message: release it until `until` without counting the attempt.
    pub async fn defer_outbound(
        &self,
        id: MessageId,
        until: i64,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE messages SET next_attempt_at = $1, lease_until = NULL, attempts = attempts - 1,
                     gate_reason = $2, updated_at = $3
                 WHERE id = $4 AND status = 'queued'",
            )
            .bind(until)
            .bind(reason)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The gate refused a message: it is never sent.
    pub async fn block_outbound(
        &self,
        id: MessageId,
        reason: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE messages SET status = 'blocked', status_rank = 9, lease_until = NULL,
                     gate_reason = $1, error_detail = $2, updated_at = $3
                 WHERE id = $4 AND status = 'queued'",
            )
            .bind(reason)
            .bind(detail)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Erases a contact's personal data: its messages, conversations, receipts, email threading
    /// records and the contact itself. The consent ledger stays (it names the contact only by a keyed hash). Returns the
    /// erased conversations (their memory is cleared by the caller), or `None` if there was no
    /// such contact.
    pub async fn erase_contact(
        &self,
        id: ContactId,
    ) -> Result<Option<Vec<ConversationId>>, StoreError> {
        let id = id.to_string();
        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let conversations: Vec<(String,)> =
                sqlx::query_as("SELECT id FROM conversations WHERE contact_id = $1")
                    .bind(&id)
                    .fetch_all(&mut *tx)
                    .await?;
            for statement in ERASURE {
                sqlx::query(statement).bind(&id).execute(&mut *tx).await?;
            }
            let removed = sqlx::query("DELETE FROM contacts WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            if removed == 0 {
                return Ok(None);
            }
            conversations
                .into_iter()
                .map(|(c,)| Ok(ConversationId(parse_uuid(&c)?)))
                .collect::<Result<Vec<_>, StoreError>>()
                .map(Some)
        })
    }
}

fn parse_action(raw: &str) -> Result<ConsentAction, StoreError> {
    ConsentAction::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("consent action `{raw}`")))
}
