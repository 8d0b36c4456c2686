//! Email: inbound through Mailgun, SendGrid Inbound Parse or Postmark webhooks, replies by SMTP.
mod config;

pub use config::{EmailConfig, EmailFile};
