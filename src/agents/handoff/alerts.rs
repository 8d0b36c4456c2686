//! Alerts for sales staff outside Parley when a conversation is handed off or escalated: a Slack
//! incoming webhook (`SLACK_WEBHOOK_URL`) and the generic webhook signed with the Standard Webhooks
//! scheme (`CRM_WEBHOOK_URL`, `CRM_WEBHOOK_SECRET`), as configured for the tenant's CRM. Alerts
//! name the conversation and the reason, never the prospect's number or words. Each is retried a
//! few times in the background; the inbox's live event does not wait for them.

use std::sync::LazyLock;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::app::AppState;
use crate::crm::config::{SlackSettings, WebhookSettings};
use crate::domain::TenantId;
use crate::store::HandoffRecord;

static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
});

fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(4)
        .with_jitter()
}

/// The alert's one-line text.
pub fn slack_text(event: &str, handoff: &HandoffRecord) -> String {
    let what = if event == "escalated" {
        ":rotating_light: Unclaimed past its SLA"
    } else {
        ":raising_hand: Needs a person"
    };
    format!(
        "{what}: {} conversation {} (reason: {}). Claim it in the Parley inbox.",
        handoff.channel, handoff.conversation_id, handoff.reason
    )
}

async fn post_slack(settings: &SlackSettings, text: &str) -> Result<(), String> {
    let response = HTTP
        .post(settings.url.expose_secret())
        .json(&json!({ "text": text }))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("Slack answered {}", response.status()))
    }
}

async fn post_webhook(
    settings: &WebhookSettings,
    id: &str,
    body: &str,
    now_ms: i64,
) -> Result<(), String> {
    let timestamp = now_ms.div_euclid(1000);
    let signature = crate::crm::webhook::sign(&settings.key.0, id, timestamp, body.as_bytes());
    let response = HTTP
        .post(&settings.url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", response.status()))
    }
}

/// Sends the tenant's configured alerts for a handoff event, in the background.
pub fn send(state: &AppState, event: &'static str, handoff: &HandoffRecord) {
    let Ok(tenant) = TenantId::parse(&handoff.tenant) else {
        return;
    };
    let Some(crm) = state.config.crm.tenant(&tenant) else {
        return;
    };
    let now = state.clock.now_ms();
    if let Some(slack) = crm.slack.clone() {
        let text = slack_text(event, handoff);
        let id = handoff.id.clone();
        tokio::spawn(async move {
            if let Err(err) = (|| post_slack(&slack, &text)).retry(retry_policy()).await {
                tracing::warn!(handoff.id = %id, error = %err, "Slack handoff alert not delivered");
            }
        });
    }
    if let Some(webhook) = crm.webhook.clone() {
        let mut data = super::handoff_json(handoff, None, now);
        if let Some(map) = data.as_object_mut() {
            // The context card carries the prospect's words: it stays in Parley.
            map.remove("context");
            if let Some(contact) = map.get_mut("contact").and_then(|c| c.as_object_mut()) {
                contact.remove("name");
            }
        }
        let body = json!({
            "type": format!("handoff.{event}"),
            "timestamp": crate::http::rfc3339(now),
            "data": data,
        })
        .to_string();
        let id = format!("handoff_{}_{event}", handoff.id);
        let handoff_id = handoff.id.clone();
        tokio::spawn(async move {
            if let Err(err) = (|| post_webhook(&webhook, &id, &body, now))
                .retry(retry_policy())
                .await
            {
                tracing::warn!(handoff.id = %handoff_id, error = %err, "webhook handoff alert not delivered");
            }
        });
    }
}
