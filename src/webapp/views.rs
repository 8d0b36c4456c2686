//! What pages show, shaped from records: messages with their author, time and delivery tick,
//! leads with their facts and factors, handoffs with their context card. Values only; no HTTP.

use serde_json::{Value, json};

use super::render::when;
use crate::domain::Direction;
use crate::leads::LeadRecord;
use crate::store::{ConversationRecord, HandoffRecord, MessageRecord};

/// The name staff know a contact by: the provider's display name, else the address.
pub fn contact_name(conversation: &ConversationRecord) -> String {
    conversation
        .display_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| conversation.address.clone())
}

/// The tick shown next to an outbound message, and what it says to a screen reader.
pub fn tick(status: &str) -> (&'static str, &'static str) {
    match status {
        "queued" => ("…", "Waiting to send"),
        "sent" => ("✓", "Sent"),
        "delivered" => ("✓✓", "Delivered"),
        "read" | "played" => ("✓✓", "Read"),
        "failed" => ("✗", "Failed"),
        "blocked" => ("⊘", "Not sent"),
        _ => ("", ""),
    }
}

fn gate_explanation(reason: &str) -> String {
    match reason {
        "opted_out" => "the contact opted out of this channel".to_owned(),
        "outside_service_window" => {
            "more than 24 hours since the contact last wrote: send an approved template instead"
                .to_owned()
        }
        "quiet_hours" => "quiet hours in the contact's time zone".to_owned(),
        "frequency_cap" => "too many proactive messages lately".to_owned(),
        other => other.replace('_', " "),
    }
}

/// A message as the conversation view shows it.
pub fn message(record: &MessageRecord) -> Value {
    let author = record.author.as_str();
    let label = match (author, record.agent.as_deref()) {
        ("bot", Some(agent)) => format!("Bot ({agent})"),
        ("bot", None) => "Bot".to_owned(),
        ("staff", _) => "Staff".to_owned(),
        _ => "Prospect".to_owned(),
    };
    let (tick, status_label) = if record.direction == Direction::Outbound {
        tick(&record.status)
    } else {
        ("", "")
    };
    json!({
        "id": record.id,
        "author": author,
        "author_label": label,
        "at": when(record.created_at),
        "at_iso": crate::http::rfc3339(record.created_at),
        "text": record.text.clone().unwrap_or_else(|| format!("[{}]", record.kind)),
        "status": record.status,
        "tick": tick,
        "status_label": status_label,
        "gate_reason": (record.status == "blocked")
            .then(|| record.gate_reason.as_deref().map(gate_explanation))
            .flatten(),
    })
}

/// A lead with its facts as label and value pairs.
pub fn lead(lead: &LeadRecord) -> Value {
    let f = &lead.facts;
    let mut facts: Vec<(&str, String)> = Vec::new();
    let mut add = |label, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            facts.push((label, value));
        }
    };
    add("Name", f.full_name());
    add("Email", f.email.clone());
    add("Phone", f.phone.clone());
    add("Company", f.company.clone());
    add("Budget", f.budget.as_ref().map(ToString::to_string));
    add("Timeline", f.timeline.clone());
    add("Location", f.location.clone());
    add("Property type", f.property_type.clone());
    add("Interests", Some(f.keywords.join(", ")));
    let name = f
        .full_name()
        .or_else(|| f.email.clone())
        .or_else(|| f.phone.clone())
        .unwrap_or_else(|| "Unnamed lead".to_owned());
    json!({
        "id": lead.id.to_string(),
        "name": name,
        "score": lead.score,
        "tier": lead.tier.as_str(),
        "source": serde_json::to_value(lead.source).unwrap_or(Value::Null),
        "contact_id": lead.contact_id.map(|c| c.to_string()),
        "facts": facts,
        "factors": lead.factors,
        "updated_at": lead.updated_at,
    })
}

fn rounded(value: &Value) -> Value {
    match value.as_f64() {
        Some(n) => json!((n * 100.0).round() / 100.0),
        None => value.clone(),
    }
}

/// A handoff with its context card, for the person looking at it.
pub fn handoff(
    record: &HandoffRecord,
    me: &str,
    is_admin: bool,
    claimed_by_name: Option<String>,
) -> Value {
    let context = &record.context;
    let mine = record.status == "claimed" && (record.claimed_by.as_deref() == Some(me) || is_admin);
    let factors: Vec<(String, Value)> = context["confidence_factors"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.replace('_', " "), rounded(v)))
                .collect()
        })
        .unwrap_or_default();
    let passages: Vec<Value> = context["passages"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    json!({
                        "document": p["document"],
                        "section": p["section"],
                        "score": rounded(&p["score"]),
                        "text": p["text"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let status_text = match (record.status.as_str(), &claimed_by_name) {
        ("claimed", Some(name)) if record.claimed_by.as_deref() == Some(me) => {
            format!("claimed by you ({name})")
        }
        ("claimed", Some(name)) => format!("claimed by {name}"),
        (other, _) => other.to_owned(),
    };
    json!({
        "id": record.id,
        "status": record.status,
        "status_text": status_text,
        "reason": record.reason.replace('_', " "),
        "detail": record.detail,
        "can_claim": record.status == "waiting",
        "mine": mine,
        "claimed_by_name": claimed_by_name,
        "intent": context["intent"],
        "agent": context["agent"],
        "confidence": context.get("confidence").map(rounded),
        "factors": factors,
        "passages": passages,
        "draft": context["draft_answer"],
        "last_message": context["last_message"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delivery_status_has_a_tick_and_a_name() {
        for status in ["queued", "sent", "delivered", "read", "failed", "blocked"] {
            let (tick, label) = tick(status);
            assert!(!tick.is_empty() && !label.is_empty(), "{status}");
        }
        assert_eq!(tick("delivered").1, "Delivered");
    }
}
