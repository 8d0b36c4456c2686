//! Channels: provider webhooks in, provider APIs out.
pub mod whatsapp;
