//! Rows as the store returns them. Columns are primitive types that decode alike from SQLite and
//! PostgreSQL; conversion into domain types happens here, once.

use serde::Serialize;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{
    Author, Channel, ContactId, ConversationId, Direction, MessageContent, MessageId,
    ProviderMessageId, Referral, TenantId,
};

/// A conversation with the contact it is with.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub tenant: TenantId,
    pub contact_id: ContactId,
    pub channel: Channel,
    /// `bot`, `queued` (waiting for a person) or `human`.
    pub state: String,
    /// The contact's address on the channel. Personal data: never log it.
    #[serde(skip)]
    pub address: String,
    pub display_name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct ConversationRow {
    id: String,
    tenant_id: String,
    contact_id: String,
    channel: String,
    state: String,
    address: String,
    display_name: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ConversationRow> for ConversationRecord {
    type Error = StoreError;
    fn try_from(row: ConversationRow) -> Result<Self, StoreError> {
        Ok(ConversationRecord {
            id: ConversationId(parse_uuid(&row.id)?),
            tenant: TenantId::parse(&row.tenant_id).map_err(StoreError::Corrupt)?,
            contact_id: ContactId(parse_uuid(&row.contact_id)?),
            channel: parse_channel(&row.channel)?,
            state: row.state,
            address: row.address,
            display_name: row.display_name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// An inbound message waiting for a worker.
#[derive(Debug, Clone)]
pub struct PendingInbound {
    pub id: MessageId,
    pub tenant: TenantId,
    pub conversation_id: ConversationId,
    pub channel: Channel,
    pub provider_message_id: Option<ProviderMessageId>,
    pub content: MessageContent,
    /// The click-to-WhatsApp ad the message came from, if any (a lead source).
    pub referral: Option<Referral>,
    pub sent_at_ms: i64,
    /// When Parley recorded it (Unix ms).
    pub recorded_at_ms: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct PendingRow {
    id: String,
    tenant_id: String,
    conversation_id: String,
    channel: String,
    provider_message_id: Option<String>,
    content: String,
    sent_at: i64,
    created_at: i64,
    referral: Option<String>,
}

impl TryFrom<PendingRow> for PendingInbound {
    type Error = StoreError;
    fn try_from(row: PendingRow) -> Result<Self, StoreError> {
        Ok(PendingInbound {
            id: MessageId(parse_uuid(&row.id)?),
            tenant: TenantId::parse(&row.tenant_id).map_err(StoreError::Corrupt)?,
            conversation_id: ConversationId(parse_uuid(&row.conversation_id)?),
            channel: parse_channel(&row.channel)?,
            provider_message_id: row
                .provider_message_id
                .as_deref()
                .map(ProviderMessageId::parse)
                .transpose()
                .map_err(StoreError::Corrupt)?,
            content: serde_json::from_str(&row.content)
                .map_err(|e| StoreError::Corrupt(format!("message content: {e}")))?,
            referral: row
                .referral
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message referral: {e}")))?,
            sent_at_ms: row.sent_at,
            recorded_at_ms: row.created_at,
        })
    }
}

/// A message as the conversation API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRecord {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub direction: Direction,
    pub author: Author,
    pub kind: String,
    pub text: Option<String>,
    pub status: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub error_code: Option<i64>,
    /// Outbound: reply, proactive or opt_out_confirmation.
    pub purpose: Option<String>,
    /// Outbound: why the consent gate refused or deferred it.
    pub gate_reason: Option<String>,
    /// Bot replies: the agent that answered, its confidence factors and sources (JSON).
    pub agent: Option<String>,
    pub confidence_factors: Option<String>,
    pub sources: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    id: String,
    conversation_id: String,
    direction: String,
    author: String,
    kind: String,
    body: Option<String>,
    status: String,
    intent: Option<String>,
    confidence: Option<f64>,
    error_code: Option<i64>,
    purpose: Option<String>,
    gate_reason: Option<String>,
    agent: Option<String>,
    confidence_factors: Option<String>,
    sources: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<MessageRow> for MessageRecord {
    type Error = StoreError;
    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        Ok(MessageRecord {
            id: MessageId(parse_uuid(&row.id)?),
            conversation_id: ConversationId(parse_uuid(&row.conversation_id)?),
            direction: match row.direction.as_str() {
                "inbound" => Direction::Inbound,
                "outbound" => Direction::Outbound,
                other => return Err(StoreError::Corrupt(format!("direction `{other}`"))),
            },
            author: match row.author.as_str() {
                "prospect" => Author::Prospect,
                "bot" => Author::Bot,
                "staff" => Author::Staff,
                other => return Err(StoreError::Corrupt(format!("author `{other}`"))),
            },
            kind: row.kind,
            text: row.body,
            status: row.status,
            intent: row.intent,
            confidence: row.confidence,
            error_code: row.error_code,
            purpose: row.purpose,
            gate_reason: row.gate_reason,
            agent: row.agent,
            confidence_factors: row.confidence_factors,
            sources: row.sources,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(super) fn parse_uuid(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|e| StoreError::Corrupt(format!("id `{raw}`: {e}")))
}

pub(super) fn parse_channel(raw: &str) -> Result<Channel, StoreError> {
    raw.parse::<Channel>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Converts rows, failing on the first corrupt one.
pub(super) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
