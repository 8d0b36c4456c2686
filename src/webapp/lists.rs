//! Conversation and lead lists for sales (filters by state, channel, tier and date, search by
//! name or number), and a lead's page with its facts, score factors and score history.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::render::{error_page, forbidden, page};
use super::session::Session;
use super::views;
use crate::app::AppState;
use crate::domain::{Channel, TenantId};
use crate::error::AppError;
use crate::leads::{LeadId, Tier};
use crate::staff::Role;
use crate::store::ListFilter;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/conversations", get(conversations))
        .route("/leads", get(leads))
        .route("/leads/{id}", get(lead))
}

/// The filter form's fields, as typed (empty strings mean "any").
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct FilterForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

const STATES: [(&str, &str); 3] = [
    ("bot", "With the bot"),
    ("queued", "Waiting for a person"),
    ("human", "With a person"),
];

/// Midnight UTC of a `YYYY-MM-DD` date, in Unix ms.
fn day_start(raw: &str, field: &str) -> Result<Option<i64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let date: jiff::civil::Date = raw
        .parse()
        .map_err(|_| format!("{field} must be a date such as 2026-01-31"))?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| Some(z.timestamp().as_millisecond()))
        .map_err(|_| format!("{field} is out of range"))
}

impl FilterForm {
    /// The store's filter for a tenant; a message for the person when a field is not valid.
    fn filter(&self, tenant: &str) -> Result<ListFilter, String> {
        let state = match self.state.as_str() {
            "" => None,
            s if STATES.iter().any(|(v, _)| *v == s) => Some(s.to_owned()),
            _ => return Err("state must be one of bot, queued, human".into()),
        };
        let channel = match self.channel.as_str() {
            "" => None,
            raw => Some(
                raw.parse::<Channel>()
                    .map_err(|_| format!("channel `{raw}` is not known"))?,
            ),
        };
        let tier = match self.tier.as_str() {
            "" => None,
            raw => Some(Tier::parse(raw).ok_or_else(|| format!("tier `{raw}` is not known"))?),
        };
        Ok(ListFilter {
            tenant: TenantId::parse(tenant).ok(),
            state,
            channel,
            tier,
            since_ms: day_start(&self.from, "Active from")?,
            // "until" includes the whole day.
            until_ms: day_start(&self.to, "Active until")?.map(|ms| ms + 24 * 60 * 60 * 1000),
            search: Some(self.q.trim().to_owned()).filter(|q| !q.is_empty()),
            contact: None,
            limit: 200,
        })
    }
}

fn choices() -> (Vec<&'static str>, Vec<&'static str>) {
    (
        Channel::ALL.iter().map(|c| c.as_str()).collect(),
        Tier::ALL.iter().map(|t| t.as_str()).collect(),
    )
}

async fn conversations(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(form): Query<FilterForm>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let (rows, error) = match form.filter(&session.staff.tenant) {
        Ok(filter) => (state.store.search_conversations(&filter).await?, None),
        Err(message) => (Vec::new(), Some(message)),
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.conversation.id.to_string(),
                "name": views::contact_name(&r.conversation),
                "channel": r.conversation.channel.as_str(),
                "state": r.conversation.state,
                "lead_id": r.lead_id,
                "tier": r.tier,
                "score": r.score,
                "updated_at": r.conversation.updated_at,
            })
        })
        .collect();
    let (channels, tiers) = choices();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(page(
        status,
        Some(&session),
        "conversations.html",
        "Conversations",
        "/conversations",
        minijinja::context! {
            filter => form, rows => rows, error => error,
            states => STATES, channels => channels, tiers => tiers,
        },
    ))
}

async fn leads(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(form): Query<FilterForm>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let (rows, error) = match form.filter(&session.staff.tenant) {
        Ok(filter) => (state.store.search_leads(&filter).await?, None),
        Err(message) => (Vec::new(), Some(message)),
    };
    let rows: Vec<Value> = rows.iter().map(views::lead).collect();
    let (channels, tiers) = choices();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(page(
        status,
        Some(&session),
        "leads.html",
        "Leads",
        "/leads",
        minijinja::context! {
            filter => form, rows => rows, error => error, channels => channels, tiers => tiers,
        },
    ))
}

async fn lead(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if !session.may(&[Role::Sales]) {
        return Ok(forbidden(&session));
    }
    let record = match LeadId::parse(&id) {
        Ok(id) => state
            .store
            .lead(id)
            .await?
            .filter(|l| l.tenant.as_str() == session.staff.tenant),
        Err(_) => None,
    };
    let Some(record) = record else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such lead.",
        ));
    };
    let history: Vec<Value> = state
        .store
        .lead_history(record.id)
        .await?
        .iter()
        .map(|h| {
            json!({
                "from_score": h.from_score,
                "to_score": h.to_score,
                "from_tier": h.from_tier.map(Tier::as_str),
                "to_tier": h.to_tier.as_str(),
                "reason": h.reason,
                "at": h.at,
            })
        })
        .collect();
    let conversations: Vec<String> = match record.contact_id {
        Some(contact) => {
            let filter = ListFilter {
                tenant: Some(record.tenant.clone()),
                contact: Some(contact),
                ..ListFilter::default()
            };
            state
                .store
                .search_conversations(&filter)
                .await?
                .into_iter()
                .map(|c| c.conversation.id.to_string())
                .collect()
        }
        None => Vec::new(),
    };
    let view = views::lead(&record);
    let title = view["name"].as_str().unwrap_or("Lead").to_owned();
    Ok(page(
        StatusCode::OK,
        Some(&session),
        "lead.html",
        &title,
        "/leads",
        minijinja::context! { lead => view, history => history, conversations => conversations },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_form_becomes_a_store_filter_or_a_message() {
        let form = FilterForm {
            q: " 98765 ".into(),
            state: "queued".into(),
            channel: "whatsapp".into(),
            tier: "hot".into(),
            from: "2026-01-31".into(),
            to: "2026-01-31".into(),
        };
        let filter = form.filter("default").unwrap();
        assert_eq!(filter.state.as_deref(), Some("queued"));
        assert_eq!(filter.channel, Some(Channel::Whatsapp));
        assert_eq!(filter.tier, Some(Tier::Hot));
        assert_eq!(filter.search.as_deref(), Some("98765"));
        assert_eq!(
            filter.until_ms.unwrap() - filter.since_ms.unwrap(),
            24 * 60 * 60 * 1000
        );
        let bad = FilterForm {
            from: "yesterday".into(),
            ..FilterForm::default()
        };
        assert!(bad.filter("default").unwrap_err().contains("date"));
        let bad = FilterForm {
            state: "gone".into(),
            ..FilterForm::default()
        };
        assert!(bad.filter("default").is_err());
    }
}
