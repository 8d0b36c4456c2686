//! WhatsApp Cloud API (Meta): webhook verification, signature, payload parsing and the send
//! client.
//!
//! Inbound, the HTTP layer answers the subscription handshake with [`answer_subscription`],
//! checks each delivery with [`verify_signature`] over the raw body, then turns it into domain
//! messages and statuses with [`parse_webhook`]. Outbound, [`WhatsAppClient`] posts to the Graph
//! API and classifies failures as [`SendError`]s the outbound worker can act on; long replies are
//! cut with [`split_message`] first. `testkit::fake_graph` is a local Graph API for tests.

mod client;
mod errors;
mod outgoing;
mod parse;
mod payload;
mod signature;
mod split;
mod verification;

#[cfg(test)]
mod fixture_tests;

pub use client::{DEFAULT_API_BASE, DEFAULT_TIMEOUT, WhatsAppClient, WhatsAppCredentials};
pub use errors::{InvalidRequest, SendError, SendErrorKind, classify};
pub use outgoing::{
    MAX_BUTTON_ID_CHARS, MAX_BUTTON_TITLE_CHARS, MAX_BUTTONS, MAX_INTERACTIVE_BODY_CHARS,
    ReplyButton,
};
pub use parse::{ParsedWebhook, WHATSAPP_OBJECT, WebhookParseError, parse_webhook};
pub use signature::{SIGNATURE_HEADER, SignatureError, sign, verify_signature};
pub use split::{MAX_TEXT_CHARS, split_message};
pub use verification::{VerificationRefused, answer_subscription};
