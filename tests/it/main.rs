//! Integration tests: one binary (one link) for all of them. Each module is one feature.

mod common;
mod intents;
