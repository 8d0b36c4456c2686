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
//! The setting belongs to the connection, so it is restored before the connection goes back to
//! the pool; a connection that could not be restored (an error, a cancelled future) is closed.

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Postgres, Sqlite, Transaction};

/// A pooled connection whose commits do not wait for the disk (see the module documentation).
pub(crate) struct RelaxedConnection<DB: Database> {
    conn: Option<PoolConnection<DB>>,
}

impl RelaxedConnection<Sqlite> {
    pub async fn acquire(pool: &sqlx::SqlitePool) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        Ok(Self { conn: Some(conn) })
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
        let mut conn = pool.acquire().await?;
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut *conn)
            .await?;
        Ok(Self { conn: Some(conn) })
    }

    /// Restores full durability and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take()
            && sqlx::query("RESET synchronous_commit")
                .execute(&mut *conn)
                .await
                .is_err()
        {
            drop(conn.detach());
        }
    }
}

impl<DB: Database> RelaxedConnection<DB> {
    pub async fn begin(&mut self) -> Result<Transaction<'_, DB>, sqlx::Error> {
        let conn = self
            .conn
            .as_mut()
            .expect("a relaxed connection is used only before its release");
        Connection::begin(&mut **conn).await
    }
}

impl<DB: Database> Drop for RelaxedConnection<DB> {
    fn drop(&mut self) {
        // Not released: it may still commit without waiting for the disk, so it must not serve
        // anyone else. Detaching takes it out of the pool; dropping it closes it.
        if let Some(conn) = self.conn.take() {
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

        // One dropped before its release (an error or a cancelled future) leaves the pool.
        let before = pool.size();
        let abandoned = RelaxedConnection::<Sqlite>::acquire(pool).await.unwrap();
        drop(abandoned);
        assert_eq!(pool.size(), before - 1);
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(synchronous(&mut conn).await, 2);
    }
}
