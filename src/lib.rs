//! Parley: a conversational agent server for WhatsApp, email and web chat.
//!
//! A message's way through (DESIGN.md section 1): a channel webhook (`http`, `channels`) verifies
//! and parses it into a domain type (`domain`), the `pipeline` records it durably and
//! acknowledges, a per-conversation ordered `queue` hands it to a worker that classifies it
//! (`llm`), picks a reply (`agents`), keeps `memory`, and writes the reply to the outbound outbox
//! in the same transaction (`store`); the sender delivers it through the channel. `broadcast`
//! fans live updates out to server-sent-event listeners.

pub mod agents;
pub mod app;
pub mod broadcast;
pub mod channels;
pub mod cli;
pub mod config;
pub mod consent;
pub mod crm;
pub mod domain;
pub mod error;
pub mod http;
pub mod knowledge;
pub mod leads;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod retry;
pub mod staff;
pub mod store;
pub mod telemetry;
pub mod testkit;
pub mod webapp;
