//! Planner statistics on PostgreSQL, kept fresh by Parley itself.
//!
//! The outbox claim and the pending-work queries are only fast when PostgreSQL knows how big the
//! tables are. A table that grows from nothing in a burst (a new install, a traffic spike) keeps
//! its "empty" statistics until ANALYZE runs, and with them the planner picks nested scans that
//! took 200 s per claim at 18,000 queued replies in the load test, where the same query takes
//! 13 ms once analysed. Autovacuum normally does this, but it waits a minute between rounds and
//! some installations turn it off. So every sweep, each hot table modified by more than its
//! threshold since its last ANALYZE is analysed, and when autovacuum is off, tables with many dead
//! rows are vacuumed too. One replica at a time does it (an advisory lock); SQLite needs none of it.

use super::{Store, StoreError};

/// The tables whose size changes fast enough to mislead the planner.
const HOT_TABLES: &[&str] = &[
    "messages",
    "conversations",
    "contacts",
    "leads",
    "lead_history",
    "handoffs",
    "delivery_receipts",
    "crm_outbox",
    "consent_events",
    "email_messages",
    "knowledge_chunks",
];

/// Advisory lock key naming "statistics maintenance" (any constant shared by the replicas).
const MAINTENANCE_LOCK: i64 = 0x7061_726c_6579_0001;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub analysed: Vec<String>,
    pub vacuumed: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct TableStats {
    relname: String,
    n_live_tup: i64,
    n_dead_tup: i64,
    n_mod_since_analyze: i64,
}

/// Whether a table changed enough since its statistics were taken to analyse it again: 500 rows,
/// or a tenth of its size when that is more.
pub fn needs_analyze(live_rows: i64, modified_since_analyze: i64) -> bool {
    modified_since_analyze >= (live_rows / 10).max(500)
}

/// Whether a table holds enough dead rows to vacuum (only done when autovacuum is off).
pub fn needs_vacuum(live_rows: i64, dead_rows: i64) -> bool {
    dead_rows >= (live_rows / 5).max(1_000)
}

impl Store {
    /// Analyses (and, without autovacuum, vacuums) the hot tables that need it. Does nothing on
    /// SQLite, or when another replica holds the maintenance lock.
    pub async fn refresh_planner_statistics(&self) -> Result<MaintenanceReport, StoreError> {
        let Store::Postgres(pool) = self else {
            return Ok(MaintenanceReport::default());
        };
        let mut conn = pool.acquire().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(MAINTENANCE_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(MaintenanceReport::default());
        }
        let result = sweep(&mut conn).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MAINTENANCE_LOCK)
            .execute(&mut *conn)
            .await;
        let report = result?;
        unlocked?;
        Ok(report)
    }
}

async fn sweep(conn: &mut sqlx::PgConnection) -> Result<MaintenanceReport, StoreError> {
    let (autovacuum,): (String,) = sqlx::query_as("SELECT current_setting('autovacuum')")
        .fetch_one(&mut *conn)
        .await?;
    let tables: Vec<String> = HOT_TABLES.iter().map(|t| (*t).to_owned()).collect();
    let stats: Vec<TableStats> = sqlx::query_as(
        "SELECT relname::text AS relname, n_live_tup, n_dead_tup, n_mod_since_analyze
         FROM pg_stat_user_tables
         WHERE schemaname = current_schema() AND relname::text = ANY($1)",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    let mut report = MaintenanceReport::default();
    for table in stats {
        // The name comes from the fixed list above, never from input.
        let Some(name) = HOT_TABLES.iter().find(|t| **t == table.relname) else {
            continue;
        };
        if autovacuum == "off" && needs_vacuum(table.n_live_tup, table.n_dead_tup) {
            sqlx::query(&format!("VACUUM (ANALYZE) {name}"))
                .execute(&mut *conn)
                .await?;
            report.vacuumed.push((*name).to_owned());
            report.analysed.push((*name).to_owned());
        } else if needs_analyze(table.n_live_tup, table.n_mod_since_analyze) {
            sqlx::query(&format!("ANALYZE {name}"))
                .execute(&mut *conn)
                .await?;
            report.analysed.push((*name).to_owned());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_wait_for_500_changes_and_large_ones_for_a_tenth() {
        assert!(!needs_analyze(0, 499));
        assert!(needs_analyze(0, 500));
        assert!(!needs_analyze(100_000, 9_999));
        assert!(needs_analyze(100_000, 10_000));
    }

    #[test]
    fn vacuum_waits_for_a_fifth_of_the_table_dead() {
        assert!(!needs_vacuum(0, 999));
        assert!(needs_vacuum(0, 1_000));
        assert!(!needs_vacuum(100_000, 19_999));
        assert!(needs_vacuum(100_000, 20_000));
    }
}
