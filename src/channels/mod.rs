//! Channels: provider webhooks in, provider APIs out.
pub mod email;
mod http_api;
pub mod outbound;
mod tenant;
pub mod twilio;
pub mod waha;
pub mod whatsapp;

pub use tenant::{
    TenantChannels, tenant_for_email, tenant_for_twilio_number, tenant_for_waha_session,
};
