//! The generic CRM webhook, signed the Standard Webhooks way: `webhook-id` (the job id, so a
//! receiver deduplicates a redelivery), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the key being
//! the base64-decoded part of the secret after `whsec_`.
//!
//! Body: `{"type": "lead.updated" | "lead.hot" | "lead.opted_out", "timestamp": "<RFC 3339>",
//! "data": <lead snapshot>}`.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::JobKind;
use super::config::WebhookSettings;
use super::deliver::Outcome;
use super::payload::LeadSnapshot;

/// The `webhook-signature` value for a message.
pub fn sign(key: &[u8], id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The event type of a job.
pub fn event_type(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Upsert => "lead.updated",
        JobKind::HotAlert => "lead.hot",
        JobKind::OptOut => "lead.opted_out",
    }
}

/// Posts one signed event.
pub async fn send(
    http: &reqwest::Client,
    settings: &WebhookSettings,
    message_id: &str,
    kind: JobKind,
    lead: &LeadSnapshot,
    now_ms: i64,
) -> Outcome {
    let body = json!({
        "type": event_type(kind),
        "timestamp": crate::http::rfc3339(now_ms),
        "data": lead,
    })
    .to_string();
    let timestamp = now_ms.div_euclid(1000);
    let signature = sign(&settings.key.0, message_id, timestamp, body.as_bytes());
    match http
        .post(&settings.url)
        .header("content-type", "application/json")
        .header("webhook-id", message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => Outcome::delivered(),
        Ok(response) => {
            Outcome::from_status("the CRM webhook", response.status(), response.headers(), "")
        }
        Err(err) => Outcome::unreachable("the CRM webhook", &err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks test vector (shared/fixtures/vector_standard_webhooks_signature.json).
    #[test]
    fn the_signer_reproduces_the_standard_webhooks_vector() {
        let vector: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/vector_standard_webhooks_signature.json"
        ))
        .unwrap();
        let secret = vector["secret"].as_str().unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let headers = &vector["headers"];
        let signature = sign(
            &key,
            headers["webhook-id"].as_str().unwrap(),
            headers["webhook-timestamp"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            vector["raw_body"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(signature, headers["webhook-signature"].as_str().unwrap());
        let other = sign(&key, "msg_other", 1614265330, b"{\"test\": 2432232314}");
        assert_ne!(other, signature);
    }
}
