//! Sales alerts for hot leads through a Slack incoming webhook (`SLACK_WEBHOOK_URL`): one
//! message per lead turning hot, with the score, tier and factors, and the lead id to open in
//! Parley. The message names the lead (sales need to know whom to call); no contact details.

use secrecy::ExposeSecret;
use serde_json::json;

use super::config::SlackSettings;
use super::deliver::Outcome;
use super::payload::LeadSnapshot;

/// The alert text.
pub fn text(lead: &LeadSnapshot) -> String {
    let factors: Vec<String> = lead
        .factors
        .iter()
        .map(|f| format!("{} {}", f.name, f.points))
        .collect();
    format!(
        ":fire: Hot lead: {} scored {} ({}). Lead {} [{}]",
        lead.name(),
        lead.score,
        factors.join(", "),
        lead.lead_id,
        lead.source
    )
}

/// Posts the alert.
pub async fn notify(
    http: &reqwest::Client,
    settings: &SlackSettings,
    lead: &LeadSnapshot,
) -> Outcome {
    match http
        .post(settings.url.expose_secret())
        .json(&json!({ "text": text(lead) }))
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => Outcome::delivered(),
        Ok(response) => Outcome::from_status("Slack", response.status(), response.headers(), ""),
        Err(err) => Outcome::unreachable("Slack", &err),
    }
}
