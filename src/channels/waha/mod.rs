//! WAHA, the self-hosted WhatsApp HTTP API: webhook HMAC, event parsing, the sendText client,
//! and the session state WAHA reports (surfaced in `/readyz`).
//!
//! Only `message` events are recorded (`message.any` would echo Parley's own replies), and
//! messages the business sent itself (`fromMe`) are ignored. Chat ids are normalised to the
//! phone number's digits (`4915...@c.us` and `4915...@s.whatsapp.net` are one contact).

mod client;
mod config;
mod parse;
mod signature;

pub use client::{WahaClient, WahaSendError};
pub use config::{WahaConfig, WahaFile};
pub use parse::{WahaEvent, WahaParseError, chat_id_for, normalise_chat_id, parse_event};
pub use signature::{HMAC_HEADER, WahaSignatureError, sign, verify};

/// WAHA session states that mean the number cannot send or receive.
pub fn session_is_down(status: &str) -> bool {
    matches!(status, "FAILED" | "STOPPED")
}
