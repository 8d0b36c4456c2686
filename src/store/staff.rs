//! Staff accounts and their sessions. Passwords arrive here already hashed (argon2) and session
//! tokens as their SHA-256; neither is ever stored in the clear.

use super::{Store, StoreError, on_pool};
use crate::domain::TenantId;

/// A staff account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StaffRecord {
    pub id: String,
    pub tenant: String,
    /// Personal data: never log it.
    pub email: String,
    pub name: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
}

type StaffRow = (String, String, String, String, String, String, i64);

fn record((id, tenant, email, name, role, password_hash, created_at): StaffRow) -> StaffRecord {
    StaffRecord {
        id,
        tenant,
        email,
        name,
        role,
        password_hash,
        created_at,
    }
}

const STAFF_COLUMNS: &str = "id, tenant_id, email, name, role, password_hash, created_at";

impl Store {
    /// Creates an account; `false` when the email is already taken in the tenant.
    pub async fn create_staff(&self, staff: &StaffRecord) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO staff (id, tenant_id, email, name, role, password_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&staff.id)
            .bind(&staff.tenant)
            .bind(&staff.email)
            .bind(&staff.name)
            .bind(&staff.role)
            .bind(&staff.password_hash)
            .bind(staff.created_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn staff_by_email(
        &self,
        tenant: &TenantId,
        email: &str,
    ) -> Result<Option<StaffRecord>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE tenant_id = $1 AND email = $2");
        let row: Option<StaffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(tenant.as_str())
                .bind(email)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(record))
    }

    pub async fn staff_by_id(&self, id: &str) -> Result<Option<StaffRecord>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE id = $1");
        let row: Option<StaffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(record))
    }

    pub async fn list_staff(&self, tenant: &TenantId) -> Result<Vec<StaffRecord>, StoreError> {
        let sql = format!(
            "SELECT {STAFF_COLUMNS} FROM staff WHERE tenant_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<StaffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(record).collect())
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        staff_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO staff_sessions (token_hash, staff_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(staff_id)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The account a live session belongs to.
    pub async fn session_staff(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<StaffRecord>, StoreError> {
        let sql = format!(
            "SELECT s.id, s.tenant_id, s.email, s.name, s.role, s.password_hash, s.created_at
             FROM staff_sessions t JOIN staff s ON s.id = t.staff_id
             WHERE t.token_hash = $1 AND t.expires_at > $2"
        );
        let row: Option<StaffRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(&sql)
                .bind(token_hash)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(record))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query("DELETE FROM staff_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
