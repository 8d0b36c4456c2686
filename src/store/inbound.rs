//! The inbound side: recording webhook batches (idempotent on the provider's message id), handing
//! pending messages to workers in order, and completing a message together with its replies in
//! one transaction (the transactional outbox).

use std::collections::HashSet;

use sqlx::QueryBuilder;

use super::records::{PendingRow, convert};
use super::{PendingInbound, Store, StoreError, on_pool};
use crate::consent::{GateReason, NewConsentEvent, Purpose};
use crate::domain::{
    ContactId, ConversationId, DeliveryStatus, InboundMessage, MessageContent, MessageId,
    StatusUpdate,
};
use crate::store::ConversationRecord;

/// Rows (or ids) one statement carries at most: a multi-row INSERT, a VALUES list or an IN list,
/// well under both dialects' bound-parameter limits.
pub(super) const ROWS_PER_STATEMENT: usize = 400;

/// What recording a batch did.
#[derive(Debug, Default, Clone)]
pub struct RecordOutcome {
    /// Messages recorded for the first time; the others were provider redeliveries.
    pub inserted: Vec<Inserted>,
    /// Outbound messages whose delivery state moved forward.
    pub status_changes: Vec<(ConversationId, MessageId)>,
}

/// A message recorded for the first time.
#[derive(Debug, Clone, Copy)]
pub struct Inserted {
    /// Its position in the batch given to `record_inbound`.
    pub index: usize,
    pub id: MessageId,
    pub conversation: ConversationId,
    /// Waits for a worker (false for content that needs no reply, such as reactions).
    pub pending: bool,
}

impl RecordOutcome {
    /// The distinct conversations that have new work.
    pub fn conversations(&self) -> Vec<ConversationId> {
        let mut seen = HashSet::new();
        self.inserted
            .iter()
            .filter(|i| i.pending && seen.insert(i.conversation))
            .map(|i| i.conversation)
            .collect()
    }
}

/// A reply to write to the outbox.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub id: MessageId,
    pub text: String,
    pub purpose: Purpose,
    /// The consent gate refused it when it was queued: it is recorded `blocked`, never sent.
    pub blocked: Option<GateReason>,
}

/// A consent event to append in the same transaction as the message's completion.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// The contact's name in the ledger (a keyed hash).
    pub subject: String,
    pub event: NewConsentEvent,
}

/// How a worker finished with an inbound message.
#[derive(Debug, Clone)]
pub struct Completion {
    /// `false` when the message needed no answer (the conversation is with a person, or the
    /// content expects none).
    pub answered: bool,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    /// Bot replies, in order; a long answer may be several parts.
    pub replies: Vec<NewReply>,
    /// A consent change the message made (STOP, START, HELP).
    pub consent: Option<LedgerEntry>,
    /// The bot steps aside: a person takes the conversation.
    pub handoff: Option<crate::store::NewHandoff>,
    /// Which agent answered, with its confidence factors and sources (JSON), for the replies.
    pub agent: Option<AgentMeta>,
}

/// What an agent adds to its replies' records.
#[derive(Debug, Clone)]
pub struct AgentMeta {
    pub agent: String,
    /// `{"classifier","retrieval","grounded","confidence"}`.
    pub factors: serde_json::Value,
    /// `[{"id","document","section","page"}]`.
    pub sources: serde_json::Value,
}

struct Prepared<'a> {
    index: usize,
    message: &'a InboundMessage,
    id: String,
    contact_id: String,
    conversation_id: String,
    content: String,
    /// The click-to-WhatsApp ad referral, as JSON.
    referral: Option<String>,
    processing: &'static str,
}

impl Store {
    /// Records a webhook's messages and statuses in one transaction. A message already recorded
    /// (same tenant, channel and provider id) is counted as a duplicate and left alone.
    #[tracing::instrument(skip_all, fields(messages = messages.len(), statuses = statuses.len()))]
    pub async fn record_inbound(
        &self,
        messages: &[InboundMessage],
        statuses: &[StatusUpdate],
        now: i64,
    ) -> Result<RecordOutcome, StoreError> {
        let prepared = messages
            .iter()
            .enumerate()
            .map(|(index, m)| {
                Ok(Prepared {
                    index,
                    message: m,
                    id: MessageId::new().to_string(),
                    contact_id: ContactId::derive(&m.tenant, m.channel, &m.sender).to_string(),
                    conversation_id: ConversationId::derive(&m.tenant, m.channel, &m.thread)
                        .to_string(),
                    content: serde_json::to_string(&m.content)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    referral: m
                        .referral
                        .as_ref()
                        .map(serde_json::to_string)
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    processing: if m.content.expects_reply() {
                        "pending"
                    } else {
                        "skipped"
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        on_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let mut outcome = RecordOutcome::default();
            for chunk in prepared.chunks(ROWS_PER_STATEMENT) {
                let mut seen = HashSet::new();
                // In id order, so concurrent batches lock the same rows in the same order.
                let mut contacts: Vec<&Prepared> = chunk
                    .iter()
                    .filter(|p| seen.insert(&p.contact_id))
                    .collect();
                contacts.sort_unstable_by(|a, b| a.contact_id.cmp(&b.contact_id));
                let mut insert = QueryBuilder::<Db>::new(
                    "INSERT INTO contacts (id, tenant_id, channel, address, display_name, created_at, updated_at) ",
                );
                insert.push_values(&contacts, |mut row, p| {
                    row.push_bind(&p.contact_id)
                        .push_bind(p.message.tenant.as_str())
                        .push_bind(p.message.channel.as_str())
                        .push_bind(&p.message.sender)
                        .push_bind(p.message.sender_name.as_deref())
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *tx).await?;

                let mut seen = HashSet::new();
                let mut conversations: Vec<&Prepared> = chunk
                    .iter()
                    .filter(|p| seen.insert(&p.conversation_id))
                    .collect();
                conversations.sort_unstable_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
                let mut insert = QueryBuilder::<Db>::new(
                    "INSERT INTO conversations (id, tenant_id, contact_id, channel, thread, state, created_at, updated_at) ",
                );
                insert.push_values(&conversations, |mut row, p| {
                    row.push_bind(&p.conversation_id)
                        .push_bind(p.message.tenant.as_str())
                        .push_bind(&p.contact_id)
                        .push_bind(p.message.channel.as_str())
                        .push_bind(&p.message.thread)
                        .push_bind("bot")
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *tx).await?;

                let mut insert = QueryBuilder::<Db>::new(
                    "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction, author, kind, address, body, content, provider_message_id, sent_at, processing, status, status_rank, created_at, updated_at, referral) ",
                );
                insert.push_values(chunk, |mut row, p| {
                    row.push_bind(&p.id)
                        .push_bind(p.message.tenant.as_str())
                        .push_bind(&p.conversation_id)
                        .push_bind(p.message.channel.as_str())
                        .push_bind("inbound")
                        .push_bind("prospect")
                        .push_bind(p.message.content.kind_name())
                        .push_bind(&p.message.sender)
                        .push_bind(p.message.text())
                        .push_bind(&p.content)
                        .push_bind(p.message.provider_message_id.as_str())
                        .push_bind(p.message.sent_at_ms)
                        .push_bind(p.processing)
                        .push_bind("received")
                        .push_bind(0_i32)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(p.referral.as_deref());
                });
                insert.push(" ON CONFLICT DO NOTHING RETURNING id");
                let inserted: Vec<(String,)> = insert.build_query_as().fetch_all(&mut *tx).await?;
                let inserted: HashSet<String> = inserted.into_iter().map(|(id,)| id).collect();
                for p in chunk.iter().filter(|p| inserted.contains(&p.id)) {
                    outcome.inserted.push(Inserted {
                        index: p.index,
                        id: MessageId(super::records::parse_uuid(&p.id)?),
                        conversation: ConversationId(super::records::parse_uuid(
                            &p.conversation_id,
                        )?),
                        pending: p.processing == "pending",
                    });
                }
            }
            for status in statuses {
                let changed = super::receipts::apply_status!(&mut *tx, status, now);
                outcome.status_changes.extend(changed);
            }
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// The conversation's messages that wait for a worker, oldest first.
    #[tracing::instrument(skip_all, fields(conversation.id = %conversation))]
    pub async fn pending_inbound(
        &self,
        conversation: ConversationId,
        limit: i64,
    ) -> Result<Vec<PendingInbound>, StoreError> {
        let rows: Vec<PendingRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT id, tenant_id, conversation_id, channel, provider_message_id, content, sent_at, created_at, referral
                 FROM messages
                 WHERE conversation_id = $1 AND processing = 'pending'
                 ORDER BY sent_at, seq
                 LIMIT $2",
            )
            .bind(conversation.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        convert(rows)
    }

    /// Conversations with messages recorded before `recorded_before` that no worker has finished:
    /// the work a crashed replica left behind.
    pub async fn conversations_with_pending(
        &self,
        recorded_before: i64,
        limit: i64,
    ) -> Result<Vec<ConversationId>, StoreError> {
        let ids: Vec<(String,)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT DISTINCT conversation_id FROM messages
                 WHERE processing = 'pending' AND created_at <= $1
                 LIMIT $2",
            )
            .bind(recorded_before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        ids.into_iter()
            .map(|(id,)| Ok(ConversationId(super::records::parse_uuid(&id)?)))
            .collect()
    }

    /// Marks an inbound message handled and writes its replies to the outbox, atomically.
    /// Returns `false` (writing nothing) when the message was already handled: a second worker
    /// or a replay after a crash can never add a second reply.
    #[tracing::instrument(skip_all, fields(message.id = %message, replies = completion.replies.len()))]
    pub async fn complete_inbound(
        &self,
        message: MessageId,
        conversation: &ConversationRecord,
        completion: &Completion,
        now: i64,
    ) -> Result<bool, StoreError> {
        let replies: Vec<ReplyRow> = completion
            .replies
            .iter()
            .enumerate()
            .map(|(part, reply)| {
                let content = serde_json::to_string(&MessageContent::Text {
                    body: reply.text.clone(),
                })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(ReplyRow {
                    id: reply.id.to_string(),
                    part: part as i32,
                    reply,
                    content,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let write = CompletionWrite {
            message: message.to_string(),
            conversation,
            conversation_id: conversation.id.to_string(),
            completion,
            replies,
            now,
        };
        match self {
            // The usual completion (replies only) is one statement on PostgreSQL: one round trip
            // instead of five, and its own transaction.
            Store::Postgres(pool)
                if completion.consent.is_none() && completion.handoff.is_none() =>
            {
                let completed: i64 = write
                    .single_statement()
                    .build_query_scalar()
                    .fetch_one(pool)
                    .await?;
                Ok(completed == 1)
            }
            _ => write.in_transaction(self).await,
        }
    }
}

/// A completion being written: the inbound message it finishes and the replies it queues.
struct CompletionWrite<'a> {
    message: String,
    conversation: &'a ConversationRecord,
    conversation_id: String,
    completion: &'a Completion,
    replies: Vec<ReplyRow<'a>>,
    now: i64,
}

/// One reply part, with what its row needs beyond the reply itself.
struct ReplyRow<'a> {
    id: String,
    part: i32,
    reply: &'a NewReply,
    /// The message content as JSON.
    content: String,
}

/// The outbox columns a reply fills, in the order [`CompletionWrite::push_reply_rows`] binds them.
const REPLY_COLUMNS: &str = "(id, tenant_id, conversation_id, channel, direction, author, kind, address, body, content, sent_at, intent, confidence, in_reply_to, part, purpose, gate_reason, error_detail, agent, confidence_factors, sources, status, status_rank, attempts, next_attempt_at, created_at, updated_at)";

impl<'a> CompletionWrite<'a> {
    fn processing(&self) -> &'static str {
        if self.completion.answered {
            "done"
        } else {
            "skipped"
        }
    }

    /// `VALUES (...), (...)`: one row per reply part, in [`REPLY_COLUMNS`] order.
    fn push_reply_rows<DB>(&'a self, builder: &mut QueryBuilder<'a, DB>)
    where
        DB: sqlx::Database,
        &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        Option<f64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        let (conversation, completion, now) = (self.conversation, self.completion, self.now);
        let agent = completion.agent.as_ref();
        builder.push_values(&self.replies, |mut row, reply_row| {
            let reply = reply_row.reply;
            let status = if reply.blocked.is_some() {
                DeliveryStatus::Blocked
            } else {
                DeliveryStatus::Queued
            };
            row.push_bind(reply_row.id.as_str())
                .push_bind(conversation.tenant.as_str())
                .push_bind(self.conversation_id.as_str())
                .push_bind(conversation.channel.as_str())
                .push_bind("outbound")
                .push_bind("bot")
                .push_bind("text")
                .push_bind(conversation.address.as_str())
                .push_bind(reply.text.as_str())
                .push_bind(reply_row.content.as_str())
                .push_bind(now)
                .push_bind(completion.intent.as_deref())
                .push_bind(completion.confidence)
                .push_bind(self.message.as_str())
                .push_bind(reply_row.part)
                .push_bind(reply.purpose.as_str())
                .push_bind(reply.blocked.map(GateReason::as_str))
                .push_bind(reply.blocked.map(GateReason::explain))
                .push_bind(agent.map(|a| a.agent.as_str()))
                .push_bind(agent.map(|a| a.factors.to_string()))
                .push_bind(agent.map(|a| a.sources.to_string()))
                .push_bind(status.as_str())
                .push_bind(status.rank() as i32)
                .push_bind(0_i32)
                .push_bind(now)
                .push_bind(now)
                .push_bind(now);
        });
    }

    /// PostgreSQL: the completion as one statement. The message is marked handled only if it was
    /// still pending, and the replies and the conversation's touch happen only if it was; the
    /// statement returns how many messages it completed (0 or 1). It commits without waiting for
    /// the disk (see `store::relaxed`).
    fn single_statement(&'a self) -> QueryBuilder<'a, sqlx::Postgres> {
        let mut statement = QueryBuilder::new("WITH done AS (UPDATE messages SET processing = ");
        statement
            .push_bind(self.processing())
            .push(", intent = ")
            .push_bind(self.completion.intent.as_deref())
            .push(", confidence = ")
            .push_bind(self.completion.confidence)
            .push(", updated_at = ")
            .push_bind(self.now)
            .push(" WHERE id = ")
            .push_bind(self.message.as_str())
            .push(" AND processing = 'pending' RETURNING 1), touched AS (UPDATE conversations SET updated_at = ")
            .push_bind(self.now)
            .push(" WHERE id = ")
            .push_bind(self.conversation_id.as_str())
            .push(" AND EXISTS (SELECT 1 FROM done))");
        if !self.replies.is_empty() {
            statement.push(format_args!(
                ", queued AS (INSERT INTO messages {REPLY_COLUMNS} SELECT * FROM ("
            ));
            self.push_reply_rows(&mut statement);
            statement.push(") AS reply WHERE EXISTS (SELECT 1 FROM done) ON CONFLICT DO NOTHING)");
        }
        statement.push(format_args!(
            " SELECT count(*) FROM done, {}",
            super::relaxed::POSTGRES_RELAXED_ROW
        ));
        statement
    }

    /// Either backend: the completion as a transaction of several statements, with the consent
    /// event and the handoff it may carry. It commits without waiting for the disk: the sender's
    /// durable claim on a reply comes before anything leaves (see `store::relaxed`).
    async fn in_transaction(&'a self, store: &Store) -> Result<bool, StoreError> {
        let (conversation, completion) = (self.conversation, self.completion);
        on_pool!(store, |pool, Db| {
            let mut conn = super::RelaxedConnection::<Db>::acquire(pool).await?;
            let mut tx = conn.begin().await?;
            let updated = sqlx::query(
                "UPDATE messages SET processing = $1, intent = $2, confidence = $3, updated_at = $4
                 WHERE id = $5 AND processing = 'pending'",
            )
            .bind(self.processing())
            .bind(completion.intent.as_deref())
            .bind(completion.confidence)
            .bind(self.now)
            .bind(&self.message)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                tx.rollback().await?;
                conn.release().await;
                return Ok(false);
            }
            if !self.replies.is_empty() {
                let mut insert =
                    QueryBuilder::<Db>::new(format!("INSERT INTO messages {REPLY_COLUMNS} "));
                self.push_reply_rows(&mut insert);
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *tx).await?;
            }
            if let Some(entry) = &completion.consent {
                super::consent::insert_consent_event!(tx, &entry.subject, &entry.event)?;
            }
            if let Some(handoff) = &completion.handoff {
                super::insert_handoff!(
                    tx,
                    conversation.tenant.as_str(),
                    &self.conversation_id,
                    handoff,
                    self.now
                )?;
            }
            sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
                .bind(self.now)
                .bind(&self.conversation_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            conn.release().await;
            Ok(true)
        })
    }
}
