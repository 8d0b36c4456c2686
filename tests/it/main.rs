//! Integration tests: one binary (one link) for all of them. Each module is one feature.

mod backends_broadcast;
mod backends_memory;
mod backends_queue;
mod common;
mod gateway;
mod harness;
mod intents;
mod knowledge;
mod knowledge_http;
mod knowledge_index;
mod store;
mod whatsapp;
