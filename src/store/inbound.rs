//! The inbound side: recording webhook batches (idempotent on the provider's message id) and
//! handing pending messages to workers in order. Completing them is `store::completion`.

use std::collections::{BTreeMap, HashSet};

use sqlx::QueryBuilder;

use super::records::{PendingRow, convert};
use super::{PendingInbound, Store, StoreError, on_pool};
use crate::domain::{ContactId, ConversationId, InboundMessage, MessageId, StatusUpdate};

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
