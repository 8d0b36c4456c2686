pub mod agents;
pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod retry;
pub mod store;
pub mod telemetry;
