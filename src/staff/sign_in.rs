//! Signing in, shared by the API (`POST /api/v1/auth/login`) and the web app's sign-in form: the
//! rate limit first, then the password (an unknown email costs as much as a wrong password), then
//! a new session.

use std::net::IpAddr;

use super::{LoginThrottle, SESSION_TTL_MS, new_session_token, verify_password};
use crate::domain::TenantId;
use crate::store::{StaffRecord, Store, StoreError};

/// A valid argon2 hash of nothing anyone knows, so an unknown email costs as much as a wrong
/// password and response times do not reveal which accounts exist.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$0mQ1LrL1jU4cAv0+6U0BSnnaP0H9kVRVZ5Mb6cWUqKE";

/// How a sign-in attempt ended.
#[derive(Debug)]
pub enum SignIn {
    /// A new session: the token for the client (shown once) and when it expires (Unix ms).
    Started {
        staff: StaffRecord,
        token: String,
        expires_at: i64,
    },
    /// Wrong email or password.
    Refused,
    /// Too many failures for this account or address lately: nothing was checked.
    Throttled,
}

/// Checks `email` and `password` for `tenant` and starts a session.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
pub async fn sign_in(
    store: &Store,
    throttle: &LoginThrottle,
    now: i64,
    tenant: &TenantId,
    email: &str,
    password: String,
    address: Option<IpAddr>,
) -> Result<SignIn, StoreError> {
    let email = email.trim().to_lowercase();
    if !throttle.allows(tenant.as_str(), &email, address) {
        tracing::warn!("sign-in throttled");
        return Ok(SignIn::Throttled);
    }
    let staff = store.staff_by_email(tenant, &email).await?;
    let hash = staff
        .as_ref()
        .map_or(DECOY_HASH, |s| s.password_hash.as_str())
        .to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(staff) = staff.filter(|_| matches) else {
        throttle.failed(tenant.as_str(), &email, address);
        tracing::info!("sign-in refused");
        return Ok(SignIn::Refused);
    };
    throttle.succeeded(tenant.as_str(), &email);
    let (token, token_hash) = new_session_token();
    let expires_at = now + SESSION_TTL_MS;
    store
        .create_session(&token_hash, &staff.id, now, expires_at)
        .await?;
    tracing::info!(staff.id = %staff.id, "signed in");
    Ok(SignIn::Started {
        staff,
        token,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_decoy_hash_is_a_valid_argon2_hash() {
        assert!(argon2::password_hash::PasswordHash::new(super::DECOY_HASH).is_ok());
        assert!(!super::verify_password("anything", super::DECOY_HASH));
    }
}
