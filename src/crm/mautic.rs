//! Mautic: a lead becomes a contact (`POST /api/contacts/new`, 201 with `contact.id`), later
//! changes edit that contact (`PATCH /api/contacts/{id}/edit`, the id from the mapping table, so
//! a change delivered twice edits the same contact to the same values), and an opt-out adds the
//! contact to do-not-contact (`POST /api/contacts/{id}/dnc/{channel}/add`). Basic auth.
//!
//! Do-not-contact channels: `email` for the email channel, `sms` for the phone-based channels
//! (WhatsApp, Twilio, WAHA) and the web chat, Mautic's two built-in channels.

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use super::config::MauticSettings;
use super::deliver::{Outcome, short};
use super::payload::LeadSnapshot;
use crate::domain::Channel;

/// Mautic's do-not-contact reason for an unsubscribe.
const DNC_UNSUBSCRIBED: u8 = 1;

fn fields(lead: &LeadSnapshot) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut put = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            fields.insert(name.to_owned(), Value::String(v.clone()));
        }
    };
    put("firstname", &lead.first_name);
    put("lastname", &lead.last_name);
    put("email", &lead.email);
    put("mobile", &lead.phone);
    put("company", &lead.company);
    put("city", &lead.location);
    fields.insert("points".into(), json!(lead.score));
    fields.insert("tags".into(), json!([format!("parley-{}", lead.tier)]));
    fields
}

/// The do-not-contact channel for a conversation channel.
pub fn dnc_channel(channel: Option<Channel>) -> &'static str {
    match channel {
        Some(Channel::Email) => "email",
        _ => "sms",
    }
}

async fn answer(service_call: Result<reqwest::Response, reqwest::Error>) -> Result<Value, Outcome> {
    match service_call {
        Ok(response) if response.status().is_success() => {
            Ok(response.json().await.unwrap_or(Value::Null))
        }
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            // The error type, not the message: messages may quote the refused values.
            let detail = body["errors"][0]["type"]
                .as_str()
                .map(short)
                .unwrap_or_default();
            Err(Outcome::from_status("Mautic", status, &headers, &detail))
        }
        Err(err) => Err(Outcome::unreachable("Mautic", &err)),
    }
}

/// Creates the contact; returns its Mautic id.
async fn create(
    http: &reqwest::Client,
    settings: &MauticSettings,
    lead: &LeadSnapshot,
) -> Result<String, Outcome> {
    let body = answer(
        http.post(format!("{}/api/contacts/new", settings.base))
            .basic_auth(&settings.username, Some(settings.password.expose_secret()))
            .json(&fields(lead))
            .send()
            .await,
    )
    .await?;
    body["contact"]["id"]
        .as_i64()
        .map(|id| id.to_string())
        .or_else(|| body["contact"]["id"].as_str().map(str::to_owned))
        .ok_or(Outcome::Retry {
            error: "Mautic's answer carried no contact id".into(),
            retry_after: None,
        })
}

/// Creates or edits the contact. `known_id` is the mapped Mautic id, if any.
pub async fn upsert(
    http: &reqwest::Client,
    settings: &MauticSettings,
    known_id: Option<&str>,
    lead: &LeadSnapshot,
) -> Outcome {
    if let Some(id) = known_id {
        let edited = http
            .patch(format!("{}/api/contacts/{id}/edit", settings.base))
            .basic_auth(&settings.username, Some(settings.password.expose_secret()))
            .json(&fields(lead))
            .send()
            .await;
        if !matches!(&edited, Ok(r) if r.status() == StatusCode::NOT_FOUND) {
            return match answer(edited).await {
                Ok(_) => Outcome::Delivered {
                    external_id: Some(id.to_owned()),
                },
                Err(outcome) => outcome,
            };
        }
        // The contact was deleted in Mautic: create it again.
    }
    match create(http, settings, lead).await {
        Ok(id) => Outcome::Delivered {
            external_id: Some(id),
        },
        Err(outcome) => outcome,
    }
}

/// Adds the contact (created first if Mautic does not know it yet) to do-not-contact.
pub async fn do_not_contact(
    http: &reqwest::Client,
    settings: &MauticSettings,
    known_id: Option<&str>,
    lead: &LeadSnapshot,
) -> Outcome {
    let id = match known_id {
        Some(id) => id.to_owned(),
        None => match create(http, settings, lead).await {
            Ok(id) => id,
            Err(outcome) => return outcome,
        },
    };
    let channel = dnc_channel(lead.channel);
    let result = answer(
        http.post(format!(
            "{}/api/contacts/{id}/dnc/{channel}/add",
            settings.base
        ))
        .basic_auth(&settings.username, Some(settings.password.expose_secret()))
        .json(&json!({
            "reason": DNC_UNSUBSCRIBED,
            "comments": format!("opted out in Parley ({})", lead.channel.map(|c| c.as_str()).unwrap_or("unknown channel")),
        }))
        .send()
        .await,
    )
    .await;
    match result {
        Ok(_) => Outcome::Delivered {
            external_id: Some(id),
        },
        Err(outcome) => outcome,
    }
}
