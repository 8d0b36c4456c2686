//! Handoff to sales staff: the bot steps aside (explicit request, low confidence, several
//! questions at once, frustration, a high-value lead),
//! the prospect is told their place in the queue (and again when it improves meaningfully), staff
//! are alerted, one of them claims the conversation, replies through the consent gate and releases
//! it back to the bot; a handoff left unclaimed past its SLA is escalated and the prospect told.

pub mod alerts;
mod hours;
mod settings;
mod triggers;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use hours::{BusinessHours, weekday};
pub use settings::HandoffSettings;
pub use triggers::{asks_for_a_person, is_frustrated, upset_level};

use crate::app::AppState;
use crate::domain::{ConversationId, TenantId};
use crate::pipeline::compose::{self, Body, Sender};
use crate::store::{ConversationRecord, HandoffRecord, NewHandoff, StoreError};

/// Why the bot stepped aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffReason {
    ExplicitRequest,
    LowConfidence,
    MultiIntent,
    Frustration,
    HighValue,
}

impl HandoffReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffReason::ExplicitRequest => "explicit_request",
            HandoffReason::LowConfidence => "low_confidence",
            HandoffReason::MultiIntent => "multi_intent",
            HandoffReason::Frustration => "frustration",
            HandoffReason::HighValue => "high_value_lead",
        }
    }
}

fn settings_of<'a>(
    state: &'a AppState,
    tenant: &TenantId,
) -> std::borrow::Cow<'a, HandoffSettings> {
    match state.config.tenant(tenant) {
        Some(t) => std::borrow::Cow::Borrowed(&t.handoff),
        None => std::borrow::Cow::Owned(HandoffSettings::default()),
    }
}

/// The handoff to open for a conversation and what to tell the prospect.
pub async fn plan(
    state: &AppState,
    conversation: &ConversationRecord,
    reason: HandoffReason,
    detail: Option<String>,
    context: Value,
) -> Result<(NewHandoff, String), StoreError> {
    let settings = settings_of(state, &conversation.tenant);
    let hours = BusinessHours::new(&settings);
    let now = state.clock.now_ms();
    let position = state.store.waiting_ahead(&conversation.tenant, now).await? + 1;
    let text = if hours.is_open(now) {
        settings.handed_off_text.clone()
    } else {
        settings
            .after_hours_text
            .replace("{opens_at}", &hours.describe(hours.next_opening(now)))
    }
    .replace("{position}", &position.to_string());
    Ok((
        NewHandoff {
            id: uuid::Uuid::now_v7().to_string(),
            reason: reason.as_str().to_owned(),
            detail,
            context,
            sla_due_at: hours.sla_due(now, settings.sla_minutes),
            told_position: position,
        },
        text,
    ))
}

/// Positions in the waiting queue of a tenant, by handoff id (1 is next).
pub fn positions(handoffs: &[HandoffRecord]) -> impl Iterator<Item = (&HandoffRecord, i64)> {
    handoffs
        .iter()
        .filter(|h| h.status == "waiting")
        .enumerate()
        .map(|(i, h)| (h, i as i64 + 1))
}

/// A handoff as the API and live events show it.
pub fn handoff_json(handoff: &HandoffRecord, position: Option<i64>, now: i64) -> Value {
    json!({
        "id": handoff.id,
        "conversation_id": handoff.conversation_id,
        "tenant": handoff.tenant,
        "contact": {
            "id": handoff.contact_id,
            "name": handoff.contact_name,
            "channel": handoff.channel,
        },
        "channel": handoff.channel,
        "reason": handoff.reason,
        "detail": handoff.detail,
        "status": handoff.status,
        "position": position,
        "waiting_seconds": ((handoff.claimed_at.unwrap_or(now) - handoff.created_at).max(0)) / 1000,
        "claimed_by": handoff.claimed_by,
        "escalated": handoff.escalated_at.is_some(),
        "sla_due_at": crate::http::rfc3339(handoff.sla_due_at),
        "created_at": crate::http::rfc3339(handoff.created_at),
        "context": handoff.context,
        "release_note": handoff.release_note,
    })
}

/// The live-events topic of a tenant's handoff queue.
pub fn queue_topic(tenant: &str) -> String {
    format!("handoffs:{tenant}")
}

/// Tells live listeners (the inbox) that a handoff changed. Best effort.
pub async fn announce(state: &AppState, event: &str, handoff_id: &str) {
    let Ok(Some(handoff)) = state.store.handoff(handoff_id).await else {
        return;
    };
    let now = state.clock.now_ms();
    let body = json!({"event": event, "handoff": handoff_json(&handoff, None, now)});
    if let Err(err) = state
        .live
        .publish(&queue_topic(&handoff.tenant), &body)
        .await
    {
        tracing::debug!(error = %err, "handoff event not published");
    }
    tracing::info!(handoff.id = %handoff.id, conversation.id = %handoff.conversation_id, event, reason = %handoff.reason, "handoff event");
    if matches!(event, "opened" | "escalated") {
        alerts::send(
            state,
            if event == "opened" {
                "opened"
            } else {
                "escalated"
            },
            &handoff,
        );
    }
}

/// After the queue moved (a claim or a release): tells waiting prospects whose position improved
/// meaningfully (to 3 or better, or by half since they were last told).
pub async fn tell_new_positions(state: &AppState, tenant: &TenantId) {
    let waiting = match state.store.open_handoffs(Some(tenant)).await {
        Ok(w) => w,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the handoff queue to update positions");
            return;
        }
    };
    let settings = settings_of(state, tenant);
    for (handoff, position) in positions(&waiting) {
        let Some(told) = handoff.last_told_position else {
            continue;
        };
        let meaningful = position < told && (position <= 3 || position * 2 <= told);
        if !meaningful {
            continue;
        }
        let Ok(conversation) = ConversationId::parse(&handoff.conversation_id) else {
            continue;
        };
        let text = settings
            .position_text
            .replace("{position}", &position.to_string());
        match compose::queue_message(
            state,
            conversation,
            Sender::Automation,
            Body::Text(text),
            false,
        )
        .await
        {
            Ok(_) => {
                if let Err(err) = state.store.set_told_position(&handoff.id, position).await {
                    tracing::warn!(handoff.id = %handoff.id, error = %err, "could not record the told position");
                }
            }
            Err(err) => {
                tracing::warn!(handoff.id = %handoff.id, error = %err, "could not tell the new queue position")
            }
        }
    }
}

/// Escalates every waiting handoff past its SLA once: a second alert for staff and a message to
/// the prospect. Several replicas may run this; each handoff is escalated by one of them.
pub async fn escalate_due(state: &AppState) {
    let now = state.clock.now_ms();
    let due = match state.store.handoffs_past_sla(now).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(error = %err, "could not look for handoffs past their SLA");
            return;
        }
    };
    for handoff in due {
        match state.store.mark_escalated(&handoff.id, now).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(handoff.id = %handoff.id, error = %err, "could not escalate a handoff");
                continue;
            }
        }
        state.metrics.handoff_escalated();
        announce(state, "escalated", &handoff.id).await;
        let Ok(tenant) = TenantId::parse(&handoff.tenant) else {
            continue;
        };
        let Ok(conversation) = ConversationId::parse(&handoff.conversation_id) else {
            continue;
        };
        let text = settings_of(state, &tenant).escalated_text.clone();
        if let Err(err) = compose::queue_message(
            state,
            conversation,
            Sender::Automation,
            Body::Text(text),
            false,
        )
        .await
        {
            tracing::warn!(handoff.id = %handoff.id, error = %err, "could not tell the prospect about the escalation");
        }
    }
}

/// Runs `escalate_due` every `interval` until `shutdown`.
pub async fn run_escalations(
    state: Arc<AppState>,
    shutdown: CancellationToken,
    interval: Duration,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        escalate_due(&state).await;
    }
}
