//! Commits that do not wait for the disk, for the pipeline's own bookkeeping.
//!
//! Every transaction is durable before it returns unless it runs on a [`RelaxedConnection`]:
//! there SQLite commits with `synchronous = NORMAL` (no fsync; the write-ahead log is synced by
//! the next full commit or checkpoint) and PostgreSQL with `synchronous_commit = off` (the WAL
//! writer flushes within a fraction of a second). Either way the commit survives Parley being
//! killed; only a crash of the machine (or of PostgreSQL) can lose it, and then only until the next
//! durable commit, which also makes every earlier one durable (both logs are written in order).
//!
//! That is the right trade for a completed message: the promises made outside depend on durable
//! commits. The webhook is acknowledged after the recorder's durable commit; a reply leaves only
//! after the sender's claim on it committed durably, which makes the completion that queued it
//! durable too. Losing a relaxed completion in a power cut means the message is answered again
//! from its durable record, never that a sent reply is forgotten.
//!
//! On SQLite the setting belongs to the connection, so it is restored before the connection goes
//! back to the pool, and a connection that could not be restored (an error, a cancelled future) is
//! closed. On PostgreSQL it is `SET LOCAL`, sent with the `BEGIN` in one round trip: it ends with
//! the transaction, whatever happens to it, and nothing needs restoring. A PostgreSQL write that is
//! one statement needs no `BEGIN` at all: joined with [`POSTGRES_RELAXED_ROW`], it sets the same
//! thing for its own implicit transaction.

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Postgres, Sqlite, Transaction};

/// How a PostgreSQL relaxed transaction starts.
const POSTGRES_RELAXED_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit TO OFF";

/// A one-row relation to join into a PostgreSQL statement sent on its own (not inside `BEGIN`):
/// it sets `synchronous_commit` to off for the statement's implicit transaction, whose commit then
/// does not wait for the disk. (`set_config(.., true)` lasts until the transaction ends, and the
/// commit reads the setting before that.) Volatile, so PostgreSQL evaluates it once per statement.
pub(crate) const POSTGRES_RELAXED_ROW: &str =
    "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed";

/// A pooled connection whose commits do not wait for the disk (see the module documentation).
pub(crate) struct RelaxedConnection<DB: Database> {
    conn: Option<PoolConnection<DB>>,
    /// The connection carries a setting to restore before it can serve anyone else.
    needs_restore: bool,
}

impl RelaxedConnection<Sqlite> {
    pub async fn acquire(pool: &sqlx::SqlitePool) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        Ok(Self {
            conn: Some(conn),
            needs_restore: true,
        })
    }

    pub async fn begin(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        Connection::begin(&mut **self.conn()).await
    }

    /// Restores full durability and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take()
            && sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *conn)
                .await
                .is_err()
        {
            drop(conn.detach());
        }
    }
}

impl RelaxedConnection<Postgres> {
    pub async fn acquire(pool: &sqlx::PgPool) -> Result<Self, sqlx::Error> {
        Ok(Self {
            conn: Some(pool.acquire().await?),
            needs_restore: false,
        })
    }

    /// A transaction whose commit does not wait for the WAL flush.
    pub async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        Connection::begin_with(&mut **self.conn(), POSTGRES_RELAXED_BEGIN).await
    }

    /// Returns the connection to the pool (the setting ended with the transaction).
    pub async fn release(mut self) {
        drop(self.conn.take());
    }
}

impl<DB: Database> RelaxedConnection<DB> {
    fn conn(&mut self) -> &mut PoolConnection<DB> {
        self.conn
            .as_mut()
            .expect("a relaxed connection is used only before its release")
    }
}

impl<DB: Database> Drop for RelaxedConnection<DB> {
    fn drop(&mut self) {
        // Not released with a setting still on: it may commit without waiting for the disk, so it
        // must not serve anyone else. Detaching takes it out of the pool; dropping it closes it.
        if let Some(conn) = self.conn.take()
            && self.needs_restore
        {
            drop(conn.detach());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// `PRAGMA synchronous`: 1 is NORMAL, 2 is FULL.
    async fn synchronous(conn: &mut sqlx::SqliteConnection) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn released_connections_are_durable_again_and_abandoned_ones_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("relaxed.db"))
            .await
            .unwrap();
        let Store::Sqlite(pool) = &store else {
            unreachable!("opened SQLite")
        };
        let mut relaxed = RelaxedConnection::<Sqlite>::acquire(pool).await.unwrap();
        assert_eq!(synchronous(relaxed.conn.as_mut().unwrap()).await, 1);
        let mut tx = relaxed.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        relaxed.release().await;

        // Every connection the pool hands out commits durably.
        let mut all = Vec::new();
        for _ in 0..pool.size() {
            all.push(pool.acquire().await.unwrap());
        }
        for conn in &mut all {
            assert_eq!(synchronous(conn).await, 2);
        }
        drop(all);

        // One dropped before its release (an error or a cancelled future) leaves the pool. The
        // size is read while it is held: the connections dropped above go back to the pool in
        // tasks of their own, so acquiring may have opened a new one instead of reusing them.
        let abandoned = RelaxedConnection::<Sqlite>::acquire(pool).await.unwrap();
        let before = pool.size();
        drop(abandoned);
        assert_eq!(pool.size(), before - 1);
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(synchronous(&mut conn).await, 2);
    }

    /// PostgreSQL for this test, from `PARLEY_TEST_DATABASE_URL`; without it the test skips,
    /// unless `PARLEY_REQUIRE_SERVICES=1` makes that a failure.
    async fn postgres_pool() -> Option<sqlx::PgPool> {
        let url = crate::store::test_database_url()?;
        Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .expect("PostgreSQL at PARLEY_TEST_DATABASE_URL"),
        )
    }

    async fn synchronous_commit<'c>(conn: impl sqlx::PgExecutor<'c>) -> String {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn postgres_relaxes_only_its_own_transaction_whatever_becomes_of_it() {
        let Some(pool) = postgres_pool().await else {
            return;
        };
        // Committed: relaxed inside, durable again for the connection's next user (the pool has
        // one connection, so it is the same one).
        let mut relaxed = RelaxedConnection::<Postgres>::acquire(&pool).await.unwrap();
        let mut tx = relaxed.begin().await.unwrap();
        assert_eq!(synchronous_commit(&mut *tx).await, "off");
        tx.commit().await.unwrap();
        relaxed.release().await;
        assert_eq!(synchronous_commit(&pool).await, "on");

        // Abandoned mid-transaction (an error or a cancelled future): rolled back, the connection
        // stays in the pool and is durable.
        let mut relaxed = RelaxedConnection::<Postgres>::acquire(&pool).await.unwrap();
        let mut tx = relaxed.begin().await.unwrap();
        assert_eq!(synchronous_commit(&mut *tx).await, "off");
        drop(tx);
        drop(relaxed);
        assert_eq!(synchronous_commit(&pool).await, "on");
        assert_eq!(pool.size(), 1);
    }

    #[tokio::test]
    async fn postgres_relaxed_row_relaxes_the_statement_that_joins_it_and_nothing_after() {
        let Some(pool) = postgres_pool().await else {
            return;
        };
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("CREATE TEMPORARY TABLE relaxed_probe (id int PRIMARY KEY, n int)")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO relaxed_probe VALUES (1, 0)")
            .execute(&mut *conn)
            .await
            .unwrap();
        // Inside an explicit transaction the setting stays visible after the statement: the
        // relation was evaluated by an UPDATE that joins it (whose commit, on its own, reads it).
        let mut tx = Connection::begin(&mut *conn).await.unwrap();
        let updated = sqlx::query(&format!(
            "UPDATE relaxed_probe SET n = n + 1 FROM {POSTGRES_RELAXED_ROW} WHERE id = 1"
        ))
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(updated, 1);
        assert_eq!(synchronous_commit(&mut *tx).await, "off");
        tx.commit().await.unwrap();
        // Sent on its own, the statement is its own transaction: the setting ends with it.
        let (n,): (i32,) = sqlx::query_as(&format!(
            "WITH bumped AS (UPDATE relaxed_probe SET n = n + 1 WHERE id = 1 RETURNING n)
             SELECT n FROM bumped, {POSTGRES_RELAXED_ROW}"
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(synchronous_commit(&mut *conn).await, "on");
    }
}
