//! Integration tests: one binary (one link) for all of them. Each module is one feature.

mod agents;
mod backends_broadcast;
mod backends_memory;
mod backends_queue;
mod browser;
mod common;
mod consent;
mod consent_ledger;
mod consent_property;
mod email;
mod gateway;
mod handoff;
mod harness;
mod intents;
mod kill;
mod knowledge;
mod knowledge_http;
mod knowledge_index;
mod leads;
mod store;
mod twilio;
mod waha;
mod webapp;
mod webapp_browser;
mod whatsapp;
mod widget;
