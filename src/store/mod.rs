//! Durable records: contacts, conversations, messages (the inbound event log and the outbound
//! outbox in one table) and delivery receipts, in SQLite (embedded default) or PostgreSQL.
//!
//! `Store` is one type with a variant per backend. Most queries are written once: both dialects
//! accept `$n` placeholders, `ON CONFLICT DO NOTHING` and `RETURNING`, so `on_pool!` runs the same
//! body against whichever pool is configured; where the dialects differ (row locking) the match
//! is written out. Every write transaction starts with a write, so SQLite takes its write lock at
//! once instead of failing a lock upgrade.

mod channels;
mod completion;
mod consent;
mod conversations;
mod handoffs;
mod inbound;
mod listing;
mod maintenance;
mod outbox;
mod receipts;
mod records;
mod relaxed;
mod staff;
mod usage;
mod visits;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use channels::{EmailRecord, SessionState};
pub use completion::{AgentMeta, BatchedCompletion, Completion, LedgerEntry, NewReply};
pub use consent::{ConsentExportRow, ContactRecord, GateFactsQuery, GateFactsRow, NewOutbound};
pub(crate) use handoffs::insert_handoff;
pub use handoffs::{ClaimOutcome, HandoffRecord, NewHandoff};
pub use inbound::{Inserted, RecordOutcome};
pub use listing::{ConversationListing, ListFilter};
pub use maintenance::MaintenanceReport;
pub use outbox::{Accepted, OutboundJob, SendFailure};
pub use records::{ConversationRecord, MessageRecord, PendingInbound};
pub(crate) use relaxed::{POSTGRES_RELAXED_ROW, RelaxedConnection};
pub use staff::StaffRecord;
pub use usage::UsageRow;
pub use visits::VisitRequest;

/// A PostgreSQL connection idle at least this long is pinged before it is used again; one used
/// more recently was pinged when it came back to the pool.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Errors from the record store. Callers log them; HTTP answers 503 without details.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// PostgreSQL chose this transaction as a deadlock's victim (SQLSTATE 40P01): running it
    /// again is safe and will most likely succeed.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40P01"))
    }
}

/// The record store.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds, and `$db` naming its
/// database type, so one query text serves both backends.
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $db:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
            $crate::store::Store::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit acknowledged to a provider survives power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // The database is a file in this process: a connection cannot drop out under us, and
            // the default ping before each use was a round trip to its thread for every query.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Store::Sqlite(pool))
    }

    /// Connects to PostgreSQL and migrates. With `schema`, every connection works in that schema
    /// (created if absent): tests use one schema each so they run in parallel.
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            let bootstrap = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&bootstrap)
                .await?;
            bootstrap.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings a connection when it goes back to the pool; the default second ping
            // when it is taken again made every statement three round trips. Only a connection
            // that sat idle long enough for the server to have gone away is pinged now.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Store::Postgres(pool))
    }

    /// The store the configuration names: PostgreSQL when `DATABASE_URL` is set, else SQLite
    /// in the data dir.
    /// With `postgres_schema`, PostgreSQL work happens in that schema.
    pub async fn open_configured(
        config: &crate::config::Config,
        postgres_schema: Option<&str>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        use secrecy::ExposeSecret;
        match &config.database_url {
            Some(url) => Store::open_postgres(url.expose_secret(), postgres_schema)
                .await
                .context("DATABASE_URL: cannot open the PostgreSQL database"),
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!(
                        "PARLEY_DATA_DIR: cannot create {}",
                        config.data_dir.display()
                    )
                })?;
                Store::open_sqlite(&config.data_dir.join("parley.db"))
                    .await
                    .context("cannot open the SQLite database in PARLEY_DATA_DIR")
            }
        }
    }

    /// `sqlite` or `postgres`, for logs and readiness output.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool, Db| pool.close().await)
    }
}

/// `PARLEY_TEST_DATABASE_URL` for a unit test that needs PostgreSQL; without it the test skips
/// (`None`, with the reason printed), unless `PARLEY_REQUIRE_SERVICES=1` makes that a failure.
#[cfg(test)]
pub(crate) fn test_database_url() -> Option<String> {
    let Ok(url) = std::env::var("PARLEY_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("PARLEY_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PARLEY_REQUIRE_SERVICES=1 but PARLEY_TEST_DATABASE_URL is not set"
        );
        eprintln!("skipped: PARLEY_TEST_DATABASE_URL is not set");
        return None;
    };
    Some(url)
}
