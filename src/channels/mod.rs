//! Channels: provider webhooks in, provider APIs out.
pub mod outbound;
pub mod whatsapp;
