//! Domain types shared by every layer: identifiers, channels, inbound messages and delivery
//! statuses. Inputs are parsed into these at the edge (webhooks, API), so deeper code never
//! re-checks a raw string.

mod channel;
mod clock;
mod ids;
mod message;

pub use channel::Channel;
pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{ContactId, ConversationId, MessageId, ProviderMessageId, TenantId};
pub use message::{
    Author, DeliveryStatus, Direction, InboundMessage, MediaKind, MessageContent, ProviderError,
    Referral, ReplyContext, StatusUpdate,
};
