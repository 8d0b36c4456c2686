//! Mailgun inbound routes: `signature = hex(HMAC-SHA256(signing key, timestamp + token))`, a
//! timestamp no older (or newer) than the allowed age, and a token never seen before (replays
//! are refused; tokens are remembered in the store for the age window, so every replica knows
//! them). Fields come as Mailgun's parsed route posts them, or as raw MIME in `body-mime`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::form::FormFields;
use super::inbound::{EmailParseError, InboundEmail, bare_address, display_name, message_ids};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MailgunSignatureError {
    #[error("the timestamp, token or signature field is missing")]
    Missing,
    #[error("the signature does not match the timestamp and token")]
    Mismatch,
    #[error("the timestamp is outside the allowed age")]
    Stale,
}

/// The signed fields of a Mailgun post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailgunSignature {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

impl MailgunSignature {
    pub fn from_form(form: &FormFields) -> Result<Self, MailgunSignatureError> {
        let get = |n: &str| {
            form.get(n)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(MailgunSignatureError::Missing)
        };
        Ok(Self {
            timestamp: get("timestamp")?,
            token: get("token")?,
            signature: get("signature")?,
        })
    }

    /// Checks the HMAC, then that the timestamp (Unix seconds) is within `max_age` of `now_ms`.
    pub fn verify(
        &self,
        key: &[u8],
        now_ms: i64,
        max_age: Duration,
    ) -> Result<(), MailgunSignatureError> {
        let mut expected = [0u8; 32];
        hex::decode_to_slice(&self.signature, &mut expected)
            .map_err(|_| MailgunSignatureError::Mismatch)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(self.timestamp.as_bytes());
        mac.update(self.token.as_bytes());
        mac.verify_slice(&expected)
            .map_err(|_| MailgunSignatureError::Mismatch)?;
        let seconds: i64 = self
            .timestamp
            .parse()
            .map_err(|_| MailgunSignatureError::Stale)?;
        let age_ms = (now_ms - seconds.saturating_mul(1000)).abs();
        if age_ms > max_age.as_millis() as i64 {
            return Err(MailgunSignatureError::Stale);
        }
        Ok(())
    }
}

/// Reads Mailgun's fields (lowercase route fields first, the original header names second).
pub fn parse(form: &FormFields) -> Result<InboundEmail, EmailParseError> {
    if let Some(mime) = form.get("body-mime") {
        let mut email = InboundEmail::from_mime(mime.as_bytes())?;
        email.attachments.extend(form.files.iter().cloned());
        return Ok(email);
    }
    let from_raw = form
        .first(&["from", "From", "sender"])
        .ok_or(EmailParseError::Missing("from"))?;
    let from = bare_address(from_raw)
        .or_else(|| form.get("sender").and_then(bare_address))
        .ok_or(EmailParseError::Invalid("from"))?;
    let mut recipients: Vec<String> = form
        .first(&["recipient", "To", "to"])
        .map(|r| r.split(',').filter_map(bare_address).collect())
        .unwrap_or_default();
    if let Some(to) = form.get("To") {
        recipients.extend(to.split(',').filter_map(bare_address));
    }
    recipients.dedup();
    let header = |name: &str| header_value(form, name);
    let body = form.first(&["body-plain"]).unwrap_or_default();
    let reply_text = match form.first(&["stripped-text"]) {
        Some(stripped) => stripped.trim().to_owned(),
        None => super::reply_text::strip_reply(body),
    };
    Ok(InboundEmail {
        from,
        from_name: display_name(from_raw),
        recipients,
        subject: form.first(&["subject", "Subject"]).map(str::to_owned),
        message_id: header("Message-Id").and_then(|v| message_ids(&v).into_iter().next()),
        in_reply_to: header("In-Reply-To").and_then(|v| message_ids(&v).into_iter().next()),
        references: header("References")
            .map(|v| message_ids(&v))
            .unwrap_or_default(),
        reply_text,
        sent_at_ms: None,
        attachments: form.files.clone(),
    })
}

/// A header from the route's own field (any case) or from `message-headers` (a JSON list of
/// `[name, value]` pairs).
fn header_value(form: &FormFields, name: &str) -> Option<String> {
    if let Some((_, v)) = form
        .fields
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
    {
        return Some(v.clone());
    }
    let headers: Vec<(String, String)> = serde_json::from_str(form.get("message-headers")?).ok()?;
    headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn both_published_vectors_verify_and_a_changed_token_does_not() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vector_mailgun_signature.json"
        );
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for case in v["cases"].as_array().unwrap() {
            let signed = MailgunSignature {
                timestamp: case["timestamp"].as_str().unwrap().to_owned(),
                token: case["token"].as_str().unwrap().to_owned(),
                signature: case["signature"].as_str().unwrap().to_owned(),
            };
            let key = case["signing_key"].as_str().unwrap().as_bytes();
            let at = signed.timestamp.parse::<i64>().unwrap() * 1000;
            let age = Duration::from_secs(300);
            signed.verify(key, at + 60_000, age).unwrap();
            assert_eq!(
                signed.verify(key, at + 301_000, age),
                Err(MailgunSignatureError::Stale)
            );
            let mut forged = signed.clone();
            forged.token.push('x');
            assert_eq!(
                forged.verify(key, at, age),
                Err(MailgunSignatureError::Mismatch)
            );
        }
    }
}
