//! Lists for the staff web app: conversations with their lead, filtered by state, channel, tier
//! and last activity, and searched by name, address or number. (Leads are filtered the same way
//! in `crate::leads`, with the same [`ListFilter`].)

use super::records::ConversationRow;
use super::{ConversationRecord, Store, StoreError, on_pool};
use crate::domain::{Channel, TenantId};
use crate::leads::Tier;

/// What a list shows: every field narrows it, `None` does not.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub tenant: Option<TenantId>,
    /// Conversations: `bot`, `queued` or `human`.
    pub state: Option<String>,
    pub channel: Option<Channel>,
    pub tier: Option<Tier>,
    /// Last activity at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Last activity before (Unix ms).
    pub until_ms: Option<i64>,
    /// A name, email address or phone number, or part of one.
    pub search: Option<String>,
    /// Conversations: only this contact's.
    pub contact: Option<crate::domain::ContactId>,
    pub limit: i64,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            tenant: None,
            state: None,
            channel: None,
            tier: None,
            since_ms: None,
            until_ms: None,
            search: None,
            contact: None,
            limit: 100,
        }
    }
}

fn like_escaped(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('%');
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl ListFilter {
    /// The `LIKE` pattern for names and addresses (lowercase), if searching.
    pub(crate) fn text_pattern(&self) -> Option<String> {
        let search = self.search.as_deref()?.trim();
        (!search.is_empty()).then(|| like_escaped(&search.to_lowercase()))
    }

    /// The `LIKE` pattern for numbers: the search's digits alone (so `+91 98765` finds
    /// `919876543210`), or the text pattern when it has fewer than three digits.
    pub(crate) fn number_pattern(&self) -> Option<String> {
        let text = self.text_pattern()?;
        let digits: String = self
            .search
            .as_deref()
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        Some(if digits.len() >= 3 {
            like_escaped(&digits)
        } else {
            text
        })
    }
}

/// A conversation in a list, with its contact's lead if there is one.
#[derive(Debug, Clone)]
pub struct ConversationListing {
    pub conversation: ConversationRecord,
    pub lead_id: Option<String>,
    pub tier: Option<String>,
    pub score: Option<i32>,
}

#[derive(sqlx::FromRow)]
struct ListingRow {
    #[sqlx(flatten)]
    conversation: ConversationRow,
    lead_id: Option<String>,
    tier: Option<String>,
    score: Option<i32>,
}

impl Store {
    /// Conversations matching `filter`, most recently active first.
    #[tracing::instrument(level = "debug", skip_all, fields(limit = filter.limit))]
    pub async fn search_conversations(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<ConversationListing>, StoreError> {
        let sql = "SELECT c.id, c.tenant_id, c.contact_id, c.channel, c.state, ct.address, ct.display_name,
                    c.created_at, c.updated_at, l.id AS lead_id, l.tier, l.score
             FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
             LEFT JOIN leads l ON l.contact_id = c.contact_id
             WHERE ($1 IS NULL OR c.tenant_id = $1)
               AND ($2 IS NULL OR c.state = $2)
               AND ($3 IS NULL OR c.channel = $3)
               AND ($4 IS NULL OR l.tier = $4)
               AND ($5 IS NULL OR c.updated_at >= $5)
               AND ($6 IS NULL OR c.updated_at < $6)
               AND ($7 IS NULL OR LOWER(COALESCE(ct.display_name, '')) LIKE $7 ESCAPE '\\'
                    OR LOWER(ct.address) LIKE $7 ESCAPE '\\' OR ct.address LIKE $8 ESCAPE '\\')
               AND ($10 IS NULL OR c.contact_id = $10)
             ORDER BY c.updated_at DESC, c.id LIMIT $9";
        let rows: Vec<ListingRow> = on_pool!(self, |pool, Db| {
            sqlx::query_as(sql)
                .bind(filter.tenant.as_ref().map(|t| t.as_str()))
                .bind(filter.state.as_deref())
                .bind(filter.channel.map(|c| c.as_str()))
                .bind(filter.tier.map(Tier::as_str))
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(filter.text_pattern())
                .bind(filter.number_pattern())
                .bind(filter.limit)
                .bind(filter.contact.map(|c| c.to_string()))
                .fetch_all(pool)
                .await?
        });
        let mut listings = Vec::with_capacity(rows.len());
        for row in rows {
            let conversation = ConversationRecord::try_from(row.conversation)?;
            listings.push(ConversationListing {
                conversation,
                lead_id: row.lead_id,
                tier: row.tier,
                score: row.score,
            });
        }
        Ok(listings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_escape_wildcards_and_match_numbers_by_their_digits() {
        let filter = ListFilter {
            search: Some("+91 98_765".into()),
            ..ListFilter::default()
        };
        assert_eq!(filter.text_pattern().unwrap(), "%+91 98\\_765%");
        assert_eq!(filter.number_pattern().unwrap(), "%9198765%");
        let by_name = ListFilter {
            search: Some(" Priya ".into()),
            ..ListFilter::default()
        };
        assert_eq!(by_name.text_pattern().unwrap(), "%priya%");
        assert_eq!(by_name.number_pattern().unwrap(), "%priya%");
        assert_eq!(ListFilter::default().text_pattern(), None);
    }
}
