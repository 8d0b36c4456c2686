//! Language-model token usage per tenant, day and purpose (agent answers, intents, lead facts).

use super::{Store, StoreError, on_pool};
use crate::domain::TenantId;

/// One day's usage for one purpose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRow {
    pub day: String,
    pub purpose: String,
    pub calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl Store {
    /// Adds one call's tokens to the tenant's tally for `day` (`YYYY-MM-DD`, UTC).
    pub async fn record_llm_usage(
        &self,
        tenant: &TenantId,
        day: &str,
        purpose: &str,
        prompt_tokens: u32,
        completion_tokens: u32,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO llm_usage (tenant_id, day, purpose, calls, prompt_tokens, completion_tokens)
                 VALUES ($1, $2, $3, 1, $4, $5)
                 ON CONFLICT (tenant_id, day, purpose) DO UPDATE SET
                   calls = llm_usage.calls + 1,
                   prompt_tokens = llm_usage.prompt_tokens + excluded.prompt_tokens,
                   completion_tokens = llm_usage.completion_tokens + excluded.completion_tokens",
            )
            .bind(tenant.as_str())
            .bind(day)
            .bind(purpose)
            .bind(i64::from(prompt_tokens))
            .bind(i64::from(completion_tokens))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The tenant's usage, latest day first.
    pub async fn llm_usage(&self, tenant: &TenantId) -> Result<Vec<UsageRow>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> = on_pool!(self, |pool, Db| {
            sqlx::query_as(
                "SELECT day, purpose, calls, prompt_tokens, completion_tokens FROM llm_usage
                 WHERE tenant_id = $1 ORDER BY day DESC, purpose",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(day, purpose, calls, prompt_tokens, completion_tokens)| UsageRow {
                    day,
                    purpose,
                    calls,
                    prompt_tokens,
                    completion_tokens,
                },
            )
            .collect())
    }
}
