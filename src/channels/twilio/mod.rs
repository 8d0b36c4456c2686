//! Twilio (WhatsApp and SMS): webhook signature, form parsing and the Messages API client.
//!
//! Inbound, the HTTP layer checks `X-Twilio-Signature` with [`verify_form`] over the URL Twilio
//! was configured with and every POST parameter, then [`parse_form`] turns the parameters into a
//! message or a delivery status. Outbound, [`TwilioClient`] posts to the Messages API and
//! classifies failures the sender can act on. `testkit::fake_twilio` is a local Messages API.

mod client;
mod config;
mod parse;
mod signature;

pub use client::{TwilioClient, TwilioSendError};
pub use config::{DEFAULT_TWILIO_API_BASE, TwilioConfig, TwilioFile};
pub use parse::{OUTSIDE_WINDOW, TwilioEvent, TwilioParseError, parse_form};
pub use signature::{
    SIGNATURE_HEADER, TwilioSignatureError, sign_form, url_variants, verify_form, verify_json,
};
