//! The inbound side: recording webhook batches (idempotent on the provider's message id), handing
//! pending messages to workers in order, and completing a message together with its replies in
//! one transaction (the transactional outbox).

use std::collections::{BTreeMap, HashSet};

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
    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len(), statuses = statuses.len()))]
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

        match self {
            // PostgreSQL: the whole batch is one statement (one round trip, one plan for every
            // batch size); a batch that also carries statuses runs it inside their transaction.
            Store::Postgres(pool) if statuses.is_empty() => {
                let inserted = postgres_insert_batch(&prepared, now)
                    .fetch_all(pool)
                    .await?;
                inserted_outcome(&prepared, inserted)
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let inserted = postgres_insert_batch(&prepared, now)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut outcome = inserted_outcome(&prepared, inserted)?;
                for status in statuses {
                    let changed = super::receipts::apply_status!(&mut *tx, status, now);
                    outcome.status_changes.extend(changed);
                }
                tx.commit().await?;
                Ok(outcome)
            }
            Store::Sqlite(pool) => sqlite_record_batch(pool, &prepared, statuses, now).await,
        }
    }

    /// The conversation's messages that wait for a worker, oldest first.
    #[tracing::instrument(level = "debug", skip_all, fields(conversation.id = %conversation))]
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
    #[tracing::instrument(level = "debug", skip_all, fields(message.id = %message, replies = completion.replies.len()))]
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

/// The completion's guard: the message is still pending. Written through `coalesce` on purpose:
/// PostgreSQL would otherwise answer `id = $1 AND processing = 'pending'` from the
/// `messages_pending` partial index, walking every pending message (thousands under load) to find
/// one id, instead of probing the id's unique index. Measured on a backlog of 5,000: 5,049 buffer
/// reads and 2.7 ms against 5 and 0.1 ms.
const STILL_PENDING: &str = "coalesce(processing, '') = 'pending'";

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
        let mut statement = QueryBuilder::new("");
        self.push_single_statement(&mut statement);
        statement
    }

    fn push_single_statement(&'a self, statement: &mut QueryBuilder<'a, sqlx::Postgres>) {
        statement
            .push("WITH done AS (UPDATE messages SET processing = ")
            .push_bind(self.processing())
            .push(", intent = ")
            .push_bind(self.completion.intent.as_deref())
            .push(", confidence = ")
            .push_bind(self.completion.confidence)
            .push(", updated_at = ")
            .push_bind(self.now)
            .push(" WHERE id = ")
            .push_bind(self.message.as_str())
            .push(format_args!(
                " AND {STILL_PENDING} RETURNING 1), touched AS"
            ))
            .push(" (UPDATE conversations SET updated_at = ")
            .push_bind(self.now)
            .push(" WHERE id = ")
            .push_bind(self.conversation_id.as_str())
            .push(" AND EXISTS (SELECT 1 FROM done))");
        if !self.replies.is_empty() {
            statement.push(format_args!(
                ", queued AS (INSERT INTO messages {REPLY_COLUMNS} SELECT * FROM ("
            ));
            self.push_reply_rows(statement);
            statement.push(") AS reply WHERE EXISTS (SELECT 1 FROM done) ON CONFLICT DO NOTHING)");
        }
        statement.push(format_args!(
            " SELECT count(*) FROM done, {}",
            super::relaxed::POSTGRES_RELAXED_ROW
        ));
    }

    /// Either backend: the completion as a transaction of several statements, with the consent
    /// event and the handoff it may carry. It commits without waiting for the disk: the sender's
    /// durable claim on a reply comes before anything leaves (see `store::relaxed`).
    async fn in_transaction(&'a self, store: &Store) -> Result<bool, StoreError> {
        let (conversation, completion) = (self.conversation, self.completion);
        on_pool!(store, |pool, Db| {
            let mut conn = super::RelaxedConnection::<Db>::acquire(pool).await?;
            let mut tx = conn.begin().await?;
            let updated = sqlx::query(&format!(
                "UPDATE messages SET processing = $1, intent = $2, confidence = $3, updated_at = $4
                     WHERE id = $5 AND {STILL_PENDING}"
            ))
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

/// PostgreSQL: a batch of inbound messages, their contacts and their conversations in one
/// statement, each column bound as one array, so the statement text (and its plan) is the same
/// for every batch size. Contacts come first, then conversations, then messages (each step reads
/// the previous one's count, which makes PostgreSQL run them in that order), and each step in id
/// order, so concurrent batches take row locks in the same order. It returns the ids of the
/// messages recorded for the first time.
fn postgres_insert_batch<'q>(
    prepared: &'q [Prepared<'q>],
    now: i64,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments> {
    let contacts = distinct_in_key_order(prepared, |p| &p.contact_id);
    let conversations = distinct_in_key_order(prepared, |p| &p.conversation_id);
    let column = |rows: &[&'q Prepared<'q>], value: fn(&'q Prepared<'q>) -> &'q str| {
        rows.iter().map(|p| value(p)).collect::<Vec<&str>>()
    };
    let tenant = |p: &'q Prepared<'q>| p.message.tenant.as_str();
    let channel = |p: &'q Prepared<'q>| p.message.channel.as_str();
    // Messages in the order of their unique key, so two deliveries of the same batch racing
    // each other wait for one another instead of deadlocking.
    let mut all: Vec<&Prepared> = prepared.iter().collect();
    all.sort_unstable_by_key(|p| {
        (
            p.message.tenant.as_str(),
            p.message.channel.as_str(),
            p.message.provider_message_id.as_str(),
        )
    });
    sqlx::query_scalar(
        "WITH new_contacts AS (
             INSERT INTO contacts (id, tenant_id, channel, address, display_name, created_at, updated_at)
             SELECT id, tenant_id, channel, address, display_name, $1, $1
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  AS c (id, tenant_id, channel, address, display_name)
             ON CONFLICT DO NOTHING RETURNING 1
         ), new_conversations AS (
             INSERT INTO conversations (id, tenant_id, contact_id, channel, thread, state, created_at, updated_at)
             SELECT id, tenant_id, contact_id, channel, thread, 'bot', $1, $1
             FROM UNNEST($7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
                  AS v (id, tenant_id, contact_id, channel, thread),
                  (SELECT count(*) FROM new_contacts) AS after_contacts
             ON CONFLICT DO NOTHING RETURNING 1
         )
         INSERT INTO messages (id, tenant_id, conversation_id, channel, direction, author, kind, address, body, content, provider_message_id, sent_at, processing, status, status_rank, created_at, updated_at, referral)
         SELECT id, tenant_id, conversation_id, channel, 'inbound', 'prospect', kind, address, body, content, provider_message_id, sent_at, processing, 'received', 0, $1, $1, referral
         FROM UNNEST($12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::int8[], $22::text[], $23::text[])
              AS m (id, tenant_id, conversation_id, channel, kind, address, body, content, provider_message_id, sent_at, processing, referral),
              (SELECT count(*) FROM new_conversations) AS after_conversations
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(now)
    .bind(column(&contacts, |p| &p.contact_id))
    .bind(column(&contacts, tenant))
    .bind(column(&contacts, channel))
    .bind(column(&contacts, |p| &p.message.sender))
    .bind(
        contacts
            .iter()
            .map(|p| p.message.sender_name.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(column(&conversations, |p| &p.conversation_id))
    .bind(column(&conversations, tenant))
    .bind(column(&conversations, |p| &p.contact_id))
    .bind(column(&conversations, channel))
    .bind(column(&conversations, |p| &p.message.thread))
    .bind(column(&all, |p| &p.id))
    .bind(column(&all, tenant))
    .bind(column(&all, |p| &p.conversation_id))
    .bind(column(&all, channel))
    .bind(column(&all, |p| p.message.content.kind_name()))
    .bind(column(&all, |p| &p.message.sender))
    .bind(all.iter().map(|p| p.message.text()).collect::<Vec<_>>())
    .bind(column(&all, |p| &p.content))
    .bind(column(&all, |p| p.message.provider_message_id.as_str()))
    .bind(all.iter().map(|p| p.message.sent_at_ms).collect::<Vec<_>>())
    .bind(column(&all, |p| p.processing))
    .bind(all.iter().map(|p| p.referral.as_deref()).collect::<Vec<_>>())
}

/// The first row of each `key`, in `key` order: the order in which concurrent batches take their
/// row locks, so they never wait on each other in a cycle.
fn distinct_in_key_order<'q>(
    prepared: &'q [Prepared<'q>],
    key: impl Fn(&'q Prepared<'q>) -> &'q String,
) -> Vec<&'q Prepared<'q>> {
    let mut first = BTreeMap::new();
    for p in prepared {
        first.entry(key(p)).or_insert(p);
    }
    first.into_values().collect()
}

/// The outcome of inserting `prepared`, given the ids the insert returned.
fn inserted_outcome(
    prepared: &[Prepared<'_>],
    inserted: Vec<String>,
) -> Result<RecordOutcome, StoreError> {
    let inserted: HashSet<String> = inserted.into_iter().collect();
    let mut outcome = RecordOutcome::default();
    for p in prepared.iter().filter(|p| inserted.contains(&p.id)) {
        outcome.inserted.push(Inserted {
            index: p.index,
            id: MessageId(super::records::parse_uuid(&p.id)?),
            conversation: ConversationId(super::records::parse_uuid(&p.conversation_id)?),
            pending: p.processing == "pending",
        });
    }
    Ok(outcome)
}

/// SQLite: a batch in one transaction, a multi-row INSERT per table and chunk.
async fn sqlite_record_batch(
    pool: &sqlx::SqlitePool,
    prepared: &[Prepared<'_>],
    statuses: &[StatusUpdate],
    now: i64,
) -> Result<RecordOutcome, StoreError> {
    type Db = sqlx::Sqlite;
    let mut tx = pool.begin().await?;
    let mut outcome = RecordOutcome::default();
    for chunk in prepared.chunks(ROWS_PER_STATEMENT) {
        // In id order, like PostgreSQL's, though SQLite has one writer at a time.
        let contacts = distinct_in_key_order(chunk, |p| &p.contact_id);
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

        let conversations = distinct_in_key_order(chunk, |p| &p.conversation_id);
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
        let inserted: Vec<String> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
        let chunk_outcome = inserted_outcome(chunk, inserted)?;
        outcome.inserted.extend(chunk_outcome.inserted);
    }
    for status in statuses {
        let changed = super::receipts::apply_status!(&mut *tx, status, now);
        outcome.status_changes.extend(changed);
    }
    tx.commit().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, ProviderMessageId, TenantId};

    fn text_from(sender: &str, n: usize) -> InboundMessage {
        InboundMessage {
            tenant: TenantId::default_tenant(),
            channel: Channel::Whatsapp,
            provider_message_id: ProviderMessageId::parse(&format!("wamid.backlog{n}")).unwrap(),
            sender: sender.to_owned(),
            thread: sender.to_owned(),
            sender_name: None,
            sent_at_ms: n as i64,
            content: MessageContent::Text {
                body: "price?".to_owned(),
            },
            context: None,
            referral: None,
        }
    }

    /// The regression behind [`STILL_PENDING`]: with statistics taken while few messages were
    /// pending and a backlog of them now (a burst of webhooks), PostgreSQL planned the
    /// completion's `id = $1 AND processing = 'pending'` as a walk of the `messages_pending`
    /// index, so every completion read the whole backlog. It must probe the id's unique index.
    #[tokio::test]
    async fn postgres_completion_finds_its_message_by_id_whatever_the_backlog() {
        let Ok(url) = std::env::var("PARLEY_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("PARLEY_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "PARLEY_REQUIRE_SERVICES=1 but PARLEY_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: PARLEY_TEST_DATABASE_URL is not set");
            return;
        };
        let schema = format!("store_{}", uuid::Uuid::new_v4().simple());
        let store = Store::open_postgres(&url, Some(&schema)).await.unwrap();
        let Store::Postgres(pool) = &store else {
            unreachable!("opened PostgreSQL")
        };
        let messages: Vec<InboundMessage> = (0..2_000)
            .map(|n| text_from(&format!("+9198{:08}", n % 50), n))
            .collect();
        let outcome = store.record_inbound(&messages, &[], 1).await.unwrap();
        assert_eq!(outcome.inserted.len(), 2_000);
        // Statistics from a quiet moment (almost nothing pending), then a backlog.
        sqlx::query("UPDATE messages SET processing = 'done'")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("ANALYZE messages").execute(pool).await.unwrap();
        sqlx::query("UPDATE messages SET processing = 'pending' WHERE sent_at >= 500")
            .execute(pool)
            .await
            .unwrap();

        let inserted = outcome.inserted.last().unwrap();
        let conversation = store
            .conversation(inserted.conversation)
            .await
            .unwrap()
            .unwrap();
        let completion = Completion {
            answered: true,
            intent: Some("pricing".to_owned()),
            confidence: Some(0.9),
            replies: vec![NewReply {
                id: MessageId::new(),
                text: "From ₹1.12 Cr".to_owned(),
                purpose: Purpose::Reply,
                blocked: None,
            }],
            consent: None,
            handoff: None,
            agent: None,
        };
        let reply = &completion.replies[0];
        let write = CompletionWrite {
            message: inserted.id.to_string(),
            conversation: &conversation,
            conversation_id: conversation.id.to_string(),
            completion: &completion,
            replies: vec![ReplyRow {
                id: reply.id.to_string(),
                part: 0,
                reply,
                content: "{}".to_owned(),
            }],
            now: 2,
        };
        let mut explain = QueryBuilder::new("EXPLAIN (FORMAT JSON) ");
        write.push_single_statement(&mut explain);
        let plan: serde_json::Value = explain.build_query_scalar().fetch_one(pool).await.unwrap();
        let plan = plan.to_string();
        assert!(
            !plan.contains("messages_pending"),
            "the completion walks the pending messages: {plan}"
        );
        assert!(plan.contains("messages_id_key"), "{plan}");

        // And it still completes the message exactly once.
        assert!(
            store
                .complete_inbound(inserted.id, &conversation, &completion, 2)
                .await
                .unwrap()
        );
        assert!(
            !store
                .complete_inbound(inserted.id, &conversation, &completion, 3)
                .await
                .unwrap()
        );
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(pool)
            .await
            .unwrap();
    }
}
