//! Tracing setup: human-readable lines by default, JSON lines with `PARLEY_LOG_FORMAT=json`.
//! Filtering follows `RUST_LOG` (default `info`). Log ids, never personal data or secrets.
//! The spans around data access (store, leads, memory, queue, knowledge) are at `debug`: there
//! are several per message, and at `info` each was formatted when it opened, for nothing unless
//! an event inside it was logged (`RUST_LOG=info,parley=debug` shows them).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,h2=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
