//! The subscription handshake: when a webhook URL is configured, Meta calls
//! `GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C` and expects 200 with body `C`
//! exactly when `T` is the configured verify token; anything else is answered 403.
//!
//! This module decides; the HTTP layer extracts the three query parameters, answers the challenge
//! as `text/plain` (it is reflected input) and maps a refusal to 403.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why the handshake was refused. The HTTP layer answers 403 for all of them; the reason is for
/// logs and never contains the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerificationRefused {
    #[error("hub.mode is not `subscribe`")]
    WrongMode,
    #[error("hub.verify_token does not match the configured verify token")]
    WrongToken,
    #[error("hub.challenge is missing")]
    MissingChallenge,
    #[error("no WhatsApp verify token is configured")]
    NotConfigured,
}

/// The body to answer Meta's subscription check with, or why it is refused.
pub fn answer_subscription(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
    expected: &str,
) -> Result<String, VerificationRefused> {
    if expected.is_empty() {
        // An empty configured token would otherwise accept an empty hub.verify_token.
        return Err(VerificationRefused::NotConfigured);
    }
    if mode != Some("subscribe") {
        return Err(VerificationRefused::WrongMode);
    }
    let token = token.ok_or(VerificationRefused::WrongToken)?;
    if !tokens_match(token, expected) {
        return Err(VerificationRefused::WrongToken);
    }
    challenge
        .map(str::to_owned)
        .ok_or(VerificationRefused::MissingChallenge)
}

/// Compares digests rather than the tokens themselves so that neither the content nor the length
/// of the configured token shows in the timing.
fn tokens_match(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "meatpacking-district-verify";

    #[test]
    fn the_challenge_is_echoed_exactly_when_mode_and_token_match() {
        assert_eq!(
            answer_subscription(Some("subscribe"), Some(TOKEN), Some("1158201444"), TOKEN),
            Ok("1158201444".to_owned())
        );
    }

    #[test]
    fn a_wrong_token_is_refused() {
        assert_eq!(
            answer_subscription(Some("subscribe"), Some("guess"), Some("1"), TOKEN),
            Err(VerificationRefused::WrongToken)
        );
        let almost = &TOKEN[..TOKEN.len() - 1];
        assert_eq!(
            answer_subscription(Some("subscribe"), Some(almost), Some("1"), TOKEN),
            Err(VerificationRefused::WrongToken)
        );
    }

    #[test]
    fn a_missing_token_is_refused() {
        assert_eq!(
            answer_subscription(Some("subscribe"), None, Some("1"), TOKEN),
            Err(VerificationRefused::WrongToken)
        );
    }

    #[test]
    fn a_mode_other_than_subscribe_is_refused() {
        for mode in [None, Some(""), Some("unsubscribe"), Some("Subscribe")] {
            assert_eq!(
                answer_subscription(mode, Some(TOKEN), Some("1"), TOKEN),
                Err(VerificationRefused::WrongMode),
                "mode {mode:?}"
            );
        }
    }

    #[test]
    fn a_missing_challenge_is_refused() {
        assert_eq!(
            answer_subscription(Some("subscribe"), Some(TOKEN), None, TOKEN),
            Err(VerificationRefused::MissingChallenge)
        );
    }

    #[test]
    fn an_unconfigured_verify_token_refuses_even_an_empty_token() {
        assert_eq!(
            answer_subscription(Some("subscribe"), Some(""), Some("1"), ""),
            Err(VerificationRefused::NotConfigured)
        );
    }
}
