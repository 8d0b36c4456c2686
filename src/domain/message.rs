//! What arrives from a channel (messages and delivery statuses) once parsed, whatever the
//! provider. Channel modules produce these; the pipeline consumes them.

use serde::{Deserialize, Serialize};

use super::{Channel, ProviderMessageId, TenantId};

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    Prospect,
    Bot,
    Staff,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Author::Prospect => "prospect",
            Author::Bot => "bot",
            Author::Staff => "staff",
        }
    }
}

/// A message a prospect sent, parsed from any channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub tenant: TenantId,
    pub channel: Channel,
    /// The provider's id, the deduplication key (with tenant and channel).
    pub provider_message_id: ProviderMessageId,
    /// The sender's address on the channel: WhatsApp id (digits), visitor id, email address.
    pub sender: String,
    /// The thread this message belongs to; the sender's address for chat channels.
    pub thread: String,
    /// The name the provider reports for the sender, if any.
    pub sender_name: Option<String>,
    /// When the provider says the message was sent, in Unix milliseconds.
    pub sent_at_ms: i64,
    pub content: MessageContent,
    /// Set when the message replies to or forwards another message.
    pub context: Option<ReplyContext>,
    /// Set when the conversation started from a click-to-WhatsApp ad (a lead source).
    pub referral: Option<Referral>,
}

impl InboundMessage {
    /// The text the agents should read, if the message carries any.
    pub fn text(&self) -> Option<&str> {
        self.content.text()
    }
}

/// The kinds of media a message can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

/// The body of an inbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageContent {
    Text {
        body: String,
    },
    Media {
        kind: MediaKind,
        /// The provider's media id or URL.
        media: String,
        mime_type: Option<String>,
        sha256: Option<String>,
        caption: Option<String>,
        filename: Option<String>,
        /// A voice note rather than an audio file.
        voice: bool,
    },
    /// A tap on an interactive reply button or list row.
    InteractiveReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// A tap on a template's quick-reply button.
    ButtonReply {
        payload: String,
        text: String,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
        url: Option<String>,
    },
    /// A reaction to an earlier message; `emoji` is `None` when a reaction was removed.
    Reaction {
        message_id: String,
        emoji: Option<String>,
    },
    /// Shared contact cards, kept as the provider sent them.
    Contacts {
        count: usize,
        raw: serde_json::Value,
    },
    /// A message the provider could not deliver to us (WhatsApp error 131051).
    Unsupported {
        error_code: Option<i64>,
        detail: Option<String>,
    },
    /// A type Parley does not know: recorded and ignored, never rejected.
    Unknown {
        type_name: String,
        raw: serde_json::Value,
    },
}

impl MessageContent {
    /// A short name for the kind of content, stored with the message.
    pub fn kind_name(&self) -> &str {
        match self {
            MessageContent::Text { .. } => "text",
            MessageContent::Media { kind, .. } => match kind {
                MediaKind::Image => "image",
                MediaKind::Video => "video",
                MediaKind::Audio => "audio",
                MediaKind::Document => "document",
                MediaKind::Sticker => "sticker",
            },
            MessageContent::InteractiveReply { .. } => "interactive",
            MessageContent::ButtonReply { .. } => "button",
            MessageContent::Location { .. } => "location",
            MessageContent::Reaction { .. } => "reaction",
            MessageContent::Contacts { .. } => "contacts",
            MessageContent::Unsupported { .. } => "unsupported",
            MessageContent::Unknown { .. } => "unknown",
        }
    }

    /// The text an agent should read: the body, a button's title, a media caption.
    pub fn text(&self) -> Option<&str> {
        match self {
            MessageContent::Text { body } => Some(body),
            MessageContent::InteractiveReply { title, .. } => Some(title),
            MessageContent::ButtonReply { text, .. } => Some(text),
            MessageContent::Media { caption, .. } => caption.as_deref(),
            _ => None,
        }
    }

    /// Whether the pipeline should answer this content (reactions and unknown types are only
    /// recorded).
    pub fn expects_reply(&self) -> bool {
        !matches!(
            self,
            MessageContent::Reaction { .. } | MessageContent::Unknown { .. }
        )
    }
}

/// A reply to, or forward of, another message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyContext {
    /// The provider id of the message replied to, when it is a reply.
    pub replied_to: Option<String>,
    pub forwarded: bool,
}

/// A click-to-WhatsApp ad referral: where the lead came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    pub source_url: Option<String>,
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub headline: Option<String>,
    pub ctwa_clid: Option<String>,
}

/// The delivery state of an outbound message. Order matters: a status update only ever moves a
/// message forward (`queued < sent < delivered < read < played`); `failed` is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Written to the outbox, not yet accepted by the provider.
    Queued,
    /// Accepted by the provider.
    Sent,
    Delivered,
    Read,
    /// A voice message was played.
    Played,
    /// Could not be delivered; terminal.
    Failed,
    /// Refused by the consent gate before reaching the provider; terminal.
    Blocked,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Played => "played",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Blocked => "blocked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "queued" => DeliveryStatus::Queued,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "played" => DeliveryStatus::Played,
            "failed" => DeliveryStatus::Failed,
            "blocked" => DeliveryStatus::Blocked,
            _ => return None,
        })
    }

    /// A number that only grows as a message progresses; failed ranks highest (terminal).
    pub fn rank(self) -> i64 {
        match self {
            DeliveryStatus::Queued => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Read => 3,
            DeliveryStatus::Played => 4,
            DeliveryStatus::Failed | DeliveryStatus::Blocked => 9,
        }
    }
}

/// An error a provider reported for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub code: i64,
    pub title: Option<String>,
}

/// A provider's report on an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub tenant: TenantId,
    pub channel: Channel,
    pub provider_message_id: ProviderMessageId,
    pub status: DeliveryStatus,
    pub at_ms: i64,
    pub error: Option<ProviderError>,
}
