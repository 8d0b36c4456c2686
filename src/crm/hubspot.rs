//! HubSpot: contacts are upserted in batches of up to 100 by email
//! (`POST {base}/crm/v3/objects/contacts/batch/upsert`, `idProperty: email`, Bearer token), which
//! is idempotent: the same change twice leaves one contact as if sent once. A hot lead also gets
//! a high-priority call task associated with the contact (`POST {base}/crm/v3/objects/tasks`).
//!
//! A 400 for a batch names no single culprit reliably, so a refused batch of several is sent
//! again one input at a time: only the input HubSpot refuses alone is dead-lettered. A 207
//! (multi-status) answer dead-letters the inputs its errors name and delivers the rest.

use std::collections::HashMap;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::config::HubSpotSettings;
use super::deliver::{Outcome, short};
use super::payload::LeadSnapshot;

/// HubSpot's association type id for task → contact.
const TASK_TO_CONTACT: u32 = 204;

/// The contact properties Parley keeps in HubSpot (standard properties only, so any portal
/// accepts them).
pub fn contact_properties(lead: &LeadSnapshot) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut put = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            properties.insert(name.to_owned(), Value::String(v.clone()));
        }
    };
    put("email", &lead.email);
    put("firstname", &lead.first_name);
    put("lastname", &lead.last_name);
    put("phone", &lead.phone);
    put("company", &lead.company);
    put("city", &lead.location);
    properties
}

/// Upserts these leads (each with an email) in one call, splitting a refused batch.
pub async fn upsert(
    http: &reqwest::Client,
    settings: &HubSpotSettings,
    leads: &[(Uuid, LeadSnapshot)],
) -> Vec<(Uuid, Outcome)> {
    let (status, outcomes) = upsert_once(http, settings, leads).await;
    if !(leads.len() > 1 && status == Some(StatusCode::BAD_REQUEST)) {
        return outcomes;
    }
    let mut singles = Vec::with_capacity(leads.len());
    for lead in leads {
        singles.extend(
            upsert_once(http, settings, std::slice::from_ref(lead))
                .await
                .1,
        );
    }
    singles
}

/// One call; the HTTP status (`None` without an answer) and each input's outcome.
async fn upsert_once(
    http: &reqwest::Client,
    settings: &HubSpotSettings,
    leads: &[(Uuid, LeadSnapshot)],
) -> (Option<StatusCode>, Vec<(Uuid, Outcome)>) {
    let inputs: Vec<Value> = leads
        .iter()
        .map(|(_, lead)| {
            json!({
                "idProperty": "email",
                "id": lead.email,
                "properties": contact_properties(lead),
            })
        })
        .collect();
    let all = |outcome: Outcome| -> Vec<(Uuid, Outcome)> {
        leads.iter().map(|(id, _)| (*id, outcome.clone())).collect()
    };
    let response = match http
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/upsert",
            settings.api_base
        ))
        .bearer_auth(settings.token.expose_secret())
        .json(&json!({ "inputs": inputs }))
        .send()
        .await
    {
        Ok(response) => response,
        Err(err) => return (None, all(Outcome::unreachable("HubSpot", &err))),
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !(status.is_success() || status == StatusCode::MULTI_STATUS) {
        let detail = body["category"].as_str().map(short).unwrap_or_default();
        return (
            Some(status),
            all(Outcome::from_status("HubSpot", status, &headers, &detail)),
        );
    }
    // Results name each contact by its email property; errors name the inputs they refused.
    let mut ids: HashMap<String, String> = HashMap::new();
    for result in body["results"].as_array().into_iter().flatten() {
        let email = result["properties"]["email"]
            .as_str()
            .map(str::to_lowercase);
        if let (Some(email), Some(id)) = (email, result["id"].as_str()) {
            ids.insert(email, id.to_owned());
        }
    }
    let mut refused: HashMap<String, String> = HashMap::new();
    for error in body["errors"].as_array().into_iter().flatten() {
        // The category, not the message: HubSpot's messages quote the refused values.
        let message = error["category"]
            .as_str()
            .or_else(|| body["category"].as_str())
            .map(short)
            .unwrap_or_else(|| "refused".to_owned());
        for id in error["context"]["ids"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                refused.insert(id.to_lowercase(), message.clone());
            }
        }
    }
    let outcomes = leads
        .iter()
        .map(|(job, lead)| {
            let email = lead.email.clone().unwrap_or_default().to_lowercase();
            let outcome = if let Some(message) = refused.get(&email) {
                Outcome::Dead {
                    error: format!("HubSpot refused the contact: {message}"),
                }
            } else if let Some(id) = ids.get(&email) {
                Outcome::Delivered {
                    external_id: Some(id.clone()),
                }
            } else if status == StatusCode::MULTI_STATUS {
                Outcome::Retry {
                    error: "HubSpot's multi-status answer did not mention this contact".into(),
                    retry_after: None,
                }
            } else {
                Outcome::delivered()
            };
            (*job, outcome)
        })
        .collect();
    (Some(status), outcomes)
}

/// A high-priority call task for sales, associated with the HubSpot contact.
pub async fn create_task(
    http: &reqwest::Client,
    settings: &HubSpotSettings,
    contact_id: &str,
    lead: &LeadSnapshot,
    now_ms: i64,
) -> Outcome {
    let body = json!({
        "properties": {
            "hs_timestamp": crate::http::rfc3339(now_ms),
            "hs_task_subject": format!("Hot lead: {} (score {})", lead.name(), lead.score),
            "hs_task_body": lead
                .factors
                .iter()
                .map(|f| format!("{} {}: {}", f.name, f.points, f.detail))
                .collect::<Vec<_>>()
                .join("\n"),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "CALL",
        },
        "associations": [{
            "to": { "id": contact_id },
            "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT }]
        }]
    });
    match http
        .post(format!("{}/crm/v3/objects/tasks", settings.api_base))
        .bearer_auth(settings.token.expose_secret())
        .json(&body)
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Outcome::Delivered {
                external_id: body["id"].as_str().map(str::to_owned),
            }
        }
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let detail = body["category"].as_str().map(short).unwrap_or_default();
            Outcome::from_status("HubSpot", status, &headers, &detail)
        }
        Err(err) => Outcome::unreachable("HubSpot", &err),
    }
}
