//! Email: inbound through Mailgun, SendGrid Inbound Parse or Postmark webhooks, replies by SMTP.
//!
//! Each provider's parser turns its post into one [`InboundEmail`]; [`thread_key`] decides the
//! conversation from the threading headers (with a plus-address fallback); the HTTP layer then
//! records the email's threading metadata and the message through the durable pipeline. Replies
//! leave through [`SmtpSender`] with `In-Reply-To`, `References` and a one-click unsubscribe
//! link signed by [`UnsubscribeKey`]. `testkit::smtp_sink` is a local SMTP server for tests.

mod config;
mod form;
mod inbound;
pub mod mailgun;
pub mod postmark;
mod reply_text;
pub mod sendgrid;
mod smtp;
mod thread;
mod unsubscribe;

pub use config::{EmailConfig, EmailFile};
pub use form::{FormError, FormFields, read_form};
pub use inbound::{Attachment, EmailParseError, InboundEmail, bare_address, message_ids};
pub use reply_text::strip_reply;
pub use smtp::{OutgoingEmail, SmtpSendError, SmtpSender, build, reply_subject};
pub use thread::{plus_address, plus_conversation, thread_key};
pub use unsubscribe::UnsubscribeKey;
