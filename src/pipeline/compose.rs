//! Messages that are not bot replies: a salesperson's reply, a follow-up, a CRM-triggered message.
//! They enter the same outbox through the same consent gate as bot replies. Whether one counts as
//! a reply (exempt from quiet hours and caps) is decided here from when the prospect last wrote,
//! never by the caller: a caller may only ask for the stricter proactive treatment.

use serde_json::json;

use crate::app::AppState;
use crate::consent::{GateDecision, GateReason, GateRequest, Purpose, TemplateSettings};
use crate::domain::{ConversationId, MessageId};
use crate::store::{NewOutbound, StoreError};

/// What to send.
#[derive(Debug, Clone)]
pub enum Body {
    Text(String),
    /// An approved template of the tenant, with its `{{n}}` parameters in order.
    Template {
        name: String,
        params: Vec<String>,
    },
}

/// Who writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Staff,
    /// Automation (follow-ups, CRM triggers): recorded as the bot.
    Automation,
}

/// The message as queued.
#[derive(Debug, Clone)]
pub struct Composed {
    pub id: MessageId,
    pub purpose: Purpose,
    pub outcome: ComposeOutcome,
}

/// What the gate decided when it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeOutcome {
    Queued,
    Deferred {
        until_ms: i64,
        reason: GateReason,
    },
    /// Recorded but never sent.
    Blocked(GateReason),
}

/// Why nothing was queued.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no such conversation")]
    NoConversation,
    #[error("the tenant has no approved template named `{0}`")]
    UnknownTemplate(String),
    #[error("template `{name}` takes {expected} parameters, {given} were given")]
    TemplateParams {
        name: String,
        expected: usize,
        given: usize,
    },
    #[error("the message is empty")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues a message in a conversation through the consent gate.
pub async fn queue_message(
    state: &AppState,
    conversation_id: ConversationId,
    sender: Sender,
    body: Body,
    proactive: bool,
) -> Result<Composed, ComposeError> {
    let conversation = state
        .store
        .conversation(conversation_id)
        .await?
        .ok_or(ComposeError::NoConversation)?;
    let policy = state.consent.policy(&conversation.tenant).clone();
    let (text, template) = match body {
        Body::Text(text) => {
            if text.trim().is_empty() {
                return Err(ComposeError::Empty);
            }
            (text, None)
        }
        Body::Template { name, params } => {
            let settings = policy
                .templates
                .get(&name)
                .ok_or_else(|| ComposeError::UnknownTemplate(name.clone()))?;
            let text = render_template(&name, settings, &params)?;
            let stored = json!({"name": name, "language": settings.language, "params": params});
            (text, Some(stored.to_string()))
        }
    };
    let now = state.clock.now_ms();
    let last_inbound = state.store.last_inbound_at(conversation_id).await?;
    let recent = last_inbound
        .is_some_and(|at| now - at <= policy.settings.reply_window().as_millis() as i64);
    let purpose = if proactive || !recent {
        Purpose::Proactive
    } else {
        Purpose::Reply
    };
    let request = GateRequest {
        tenant: &conversation.tenant,
        contact: conversation.contact_id,
        channel: conversation.channel,
        address: &conversation.address,
        purpose,
        template: template.is_some(),
    };
    let decision = state.consent.gate(request, now).await?;
    let (status, gate_reason, next_attempt_at, outcome) = match decision {
        GateDecision::Send => ("queued", None, now, ComposeOutcome::Queued),
        GateDecision::Defer { until_ms, reason } => (
            "queued",
            Some(reason.as_str()),
            until_ms,
            ComposeOutcome::Deferred { until_ms, reason },
        ),
        GateDecision::Refuse(reason) => (
            "blocked",
            Some(reason.as_str()),
            now,
            ComposeOutcome::Blocked(reason),
        ),
    };
    let id = MessageId::new();
    state
        .store
        .enqueue_outbound(&NewOutbound {
            id,
            tenant: conversation.tenant.clone(),
            conversation: conversation.id,
            channel: conversation.channel,
            address: conversation.address.clone(),
            author: match sender {
                Sender::Staff => "staff",
                Sender::Automation => "bot",
            },
            text,
            template,
            purpose: purpose.as_str(),
            status,
            gate_reason,
            next_attempt_at,
            now,
        })
        .await?;
    tracing::info!(conversation.id = %conversation.id, message.id = %id, purpose = purpose.as_str(), outcome = ?outcome, "outbound message composed");
    if outcome == ComposeOutcome::Queued {
        state.outbox_wakeup.notify_one();
    }
    Ok(Composed {
        id,
        purpose,
        outcome,
    })
}

/// The template's approved body with its parameters filled in, as Parley shows the message.
fn render_template(
    name: &str,
    settings: &TemplateSettings,
    params: &[String],
) -> Result<String, ComposeError> {
    let expected = (1..=20)
        .take_while(|n| settings.body.contains(&format!("{{{{{n}}}}}")))
        .count();
    if params.len() != expected {
        return Err(ComposeError::TemplateParams {
            name: name.to_owned(),
            expected,
            given: params.len(),
        });
    }
    Ok(params
        .iter()
        .enumerate()
        .fold(settings.body.clone(), |body, (i, value)| {
            body.replace(&format!("{{{{{}}}}}", i + 1), value)
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_their_numbered_parameters() {
        let settings = TemplateSettings {
            language: "en".into(),
            body: "Hi {{1}}, your visit to {{2}} is confirmed.".into(),
        };
        assert_eq!(
            render_template(
                "visit",
                &settings,
                &["Asha".into(), "Skyline Meadows".into()]
            )
            .unwrap(),
            "Hi Asha, your visit to Skyline Meadows is confirmed."
        );
        assert!(matches!(
            render_template("visit", &settings, &["Asha".into()]),
            Err(ComposeError::TemplateParams {
                expected: 2,
                given: 1,
                ..
            })
        ));
    }
}
