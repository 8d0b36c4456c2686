//! Cross-site request forgery protection. Signed in, the token is derived from the session token
//! (a domain-separated SHA-256 of it), so it needs no storage and dies with the session; it is put
//! in every form (`csrf` field) and in a `<meta>` tag for scripts, which send it as
//! `X-CSRF-Token`. Before sign-in, the login form uses a double-submit cookie: a random value in an
//! HTTP-only cookie that the form must repeat. Session cookies are also `SameSite=Strict`; the
//! token is the second lock.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header scripts send the token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field forms send it in.
pub const FIELD: &str = "csrf";
/// The cookie holding the login form's token.
pub const LOGIN_COOKIE: &str = "parley_login_csrf";

/// The CSRF token that goes with a session token.
pub fn token_for(session_token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"parley csrf v1\0");
    hash.update(session_token.as_bytes());
    hex::encode(hash.finalize())
}

/// A fresh random token for the login form.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// Whether `given` is the expected token (constant time; an empty token never matches).
pub fn matches(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(given) if !given.is_empty() && !expected.is_empty() => {
            expected.as_bytes().ct_eq(given.trim().as_bytes()).into()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_belongs_to_its_session_only() {
        let a = token_for("session-a");
        assert_eq!(a, token_for("session-a"));
        assert_ne!(a, token_for("session-b"));
        assert!(!a.contains("session-a"));
        assert!(matches(&a, Some(&a)));
        assert!(!matches(&a, Some(&token_for("session-b"))));
        assert!(!matches(&a, None));
        assert!(!matches("", Some("")));
    }
}
