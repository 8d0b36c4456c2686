//! Local fakes of third-party APIs (Graph API, OpenAI, Twilio, WAHA, an SMTP server) that record
//! what they receive; used by tests and the load generator.

pub mod fake_crm;
pub mod fake_graph;
pub mod fake_openai;
pub mod fake_twilio;
pub mod fake_waha;
mod recorded;
mod serve;

pub use recorded::ScriptedFailure;
pub mod capture;
pub mod smtp_sink;
