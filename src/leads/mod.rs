//! Leads: every conversation is a lead. Facts are extracted from each inbound message (rules
//! offline, plus a structured-output LLM call when one is configured), verified (email syntax,
//! MX records, disposable domains; phone validity and type), scored 0-100 with named factors,
//! given a tier with temperature moves, and synced to the CRMs through the outbox (`crm`).
//!
//! Entry points: [`observe`] (the pipeline worker, after an inbound message is committed),
//! [`Leads::opt_out`] (through `crm::on_opt_out`), [`Leads::review_due`] (the CRM worker's
//! periodic re-score) and the CSV import (`import`).

pub mod config;
pub mod extract;
pub mod facts;
pub mod import;
pub mod llm_extract;
pub mod money;
mod observe;
pub mod phone;
mod recent;
mod record;
pub mod score;
mod service;
mod store;
pub mod temperature;
pub mod validate;

pub use config::LeadsConfig;
pub use facts::{Budget, Engagement, LeadFacts, LeadSource, MessageSignals};
pub use observe::observe;
pub use recent::RecentLeads;
pub use record::{HistoryEntry, LeadId, LeadRecord};
pub use score::{Factor, Score, Tier};
pub use service::{Leads, Locate, Note};
pub use store::{LeadChange, LeadOrder};
pub use validate::{EmailStatus, MxResolver, MxStatus, Verification};
