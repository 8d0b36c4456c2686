//! One-click unsubscribe tokens (RFC 8058): `<tenant>.<contact id>.<signature>`, where the
//! signature is HMAC-SHA256 over the tenant and contact id, so a link cannot be forged for
//! another contact. The key is `PARLEY_UNSUBSCRIBE_SECRET`, or derived from the admin token;
//! replicas must share it, as they share the admin token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use crate::domain::{ContactId, TenantId};

#[derive(Clone)]
pub struct UnsubscribeKey(SecretString);

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeKey(..)")
    }
}

impl UnsubscribeKey {
    /// The configured secret, or one derived from the admin token.
    pub fn new(configured: Option<&SecretString>, admin_token: &SecretString) -> Self {
        match configured {
            Some(secret) => Self(secret.clone()),
            None => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(admin_token.expose_secret().as_bytes())
                        .expect("HMAC accepts any key length");
                mac.update(b"parley unsubscribe links");
                Self(SecretString::from(hex::encode(mac.finalize().into_bytes())))
            }
        }
    }

    pub fn token(&self, tenant: &TenantId, contact: ContactId) -> String {
        let contact = contact.0.simple().to_string();
        format!(
            "{tenant}.{contact}.{}",
            self.signature(tenant.as_str(), &contact)
        )
    }

    /// The tenant and contact a token names, if its signature is right.
    pub fn verify(&self, token: &str) -> Option<(TenantId, ContactId)> {
        let mut parts = token.split('.');
        let (tenant, contact, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expected = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if expected.len() != 16 {
            return None;
        }
        self.mac(tenant, contact)
            .verify_truncated_left(&expected)
            .ok()?;
        Some((
            TenantId::parse(tenant).ok()?,
            ContactId(Uuid::parse_str(contact).ok()?),
        ))
    }

    fn signature(&self, tenant: &str, contact: &str) -> String {
        let digest = self.mac(tenant, contact).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&digest[..16])
    }

    fn mac(&self, tenant: &str, contact: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(b"unsubscribe\0");
        mac.update(tenant.as_bytes());
        mac.update(b"\0");
        mac.update(contact.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_and_cannot_be_moved_to_another_contact() {
        let key = UnsubscribeKey::new(None, &SecretString::from("admin"));
        let tenant = TenantId::default_tenant();
        let contact = ContactId(Uuid::new_v4());
        let token = key.token(&tenant, contact);
        assert_eq!(key.verify(&token), Some((tenant.clone(), contact)));
        let signature = token.rsplit('.').next().unwrap();
        let other = ContactId(Uuid::new_v4());
        let forged = format!("default.{}.{signature}", other.0.simple());
        assert_eq!(key.verify(&forged), None);
        let other_key =
            UnsubscribeKey::new(Some(&SecretString::from("x")), &SecretString::from("admin"));
        assert_eq!(other_key.verify(&token), None);
        assert_eq!(key.verify("default.nope"), None);
        assert_eq!(key.verify(&format!("{token}.extra")), None);
    }
}
