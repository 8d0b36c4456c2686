//! The consent ledger's vocabulary: actions, sources, events, and the keyed hash that names a
//! contact in it. The ledger is append-only (database triggers refuse UPDATE and DELETE) and holds
//! no personal data: a contact appears only as `HMAC-SHA256(key, tenant/contact id)`.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{Channel, ContactId, TenantId};

/// A change of consent (or a request for help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    OptIn,
    OptOut,
    Help,
}

impl ConsentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentAction::OptIn => "opt_in",
            ConsentAction::OptOut => "opt_out",
            ConsentAction::Help => "help",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "opt_in" => ConsentAction::OptIn,
            "opt_out" => ConsentAction::OptOut,
            "help" => ConsentAction::Help,
            _ => return None,
        })
    }
}

/// Where a consent event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    /// A single-word keyword in an inbound message.
    Keyword,
    /// A plain-language request in an inbound message.
    Phrase,
    /// The intent classifier, backed by a cue word, in an inbound message.
    Classifier,
    /// Recorded through the API by an integration.
    Api,
    /// A bulk import.
    Import,
    /// Recorded by a staff member.
    Staff,
    /// A web form.
    Form,
    /// The provider reported it (Twilio's `OptOutType`).
    Provider,
    /// An email's one-click unsubscribe link.
    UnsubscribeLink,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::Keyword => "keyword",
            ConsentSource::Phrase => "phrase",
            ConsentSource::Classifier => "classifier",
            ConsentSource::Api => "api",
            ConsentSource::Import => "import",
            ConsentSource::Staff => "staff",
            ConsentSource::Form => "form",
            ConsentSource::Provider => "provider",
            ConsentSource::UnsubscribeLink => "unsubscribe_link",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "keyword" => ConsentSource::Keyword,
            "phrase" => ConsentSource::Phrase,
            "classifier" => ConsentSource::Classifier,
            "api" => ConsentSource::Api,
            "import" => ConsentSource::Import,
            "staff" => ConsentSource::Staff,
            "form" => ConsentSource::Form,
            "provider" => ConsentSource::Provider,
            "unsubscribe_link" => ConsentSource::UnsubscribeLink,
            _ => return None,
        })
    }
}

/// An event to append to the ledger.
#[derive(Debug, Clone)]
pub struct NewConsentEvent {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub channel: Channel,
    pub action: ConsentAction,
    pub source: ConsentSource,
    /// The inbound message id, or the caller's reference for the evidence.
    pub proof: Option<String>,
    /// The keyword or phrase that matched (never the message text).
    pub detail: Option<String>,
    pub at_ms: i64,
}

/// An event as the ledger holds it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentEvent {
    pub id: String,
    pub channel: String,
    pub action: String,
    pub source: String,
    pub proof: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// The key that turns contact ids into ledger subjects.
#[derive(Clone)]
pub struct SubjectKey(SecretString);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

impl SubjectKey {
    pub fn new(key: SecretString) -> Self {
        Self(key)
    }

    /// The contact's name in the ledger.
    pub fn subject(&self, tenant: &TenantId, contact: ContactId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(tenant.as_str().as_bytes());
        mac.update(b"/");
        mac.update(contact.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_stable_keyed_and_per_tenant() {
        let key = SubjectKey::new(SecretString::from("k1"));
        let other_key = SubjectKey::new(SecretString::from("k2"));
        let tenant = TenantId::default_tenant();
        let contact = ContactId::derive(&tenant, Channel::Whatsapp, "919800000001");
        let subject = key.subject(&tenant, contact);
        assert_eq!(subject, key.subject(&tenant, contact));
        assert_eq!(subject.len(), 64);
        assert!(!subject.contains("9198"));
        assert_ne!(subject, other_key.subject(&tenant, contact));
        let acme = TenantId::parse("acme").unwrap();
        assert_ne!(subject, key.subject(&acme, contact));
    }

    #[test]
    fn actions_and_sources_round_trip() {
        for a in [
            ConsentAction::OptIn,
            ConsentAction::OptOut,
            ConsentAction::Help,
        ] {
            assert_eq!(ConsentAction::parse(a.as_str()), Some(a));
        }
        for s in [
            ConsentSource::Keyword,
            ConsentSource::Phrase,
            ConsentSource::Classifier,
            ConsentSource::Api,
            ConsentSource::Import,
            ConsentSource::Staff,
            ConsentSource::Form,
            ConsentSource::Provider,
            ConsentSource::UnsubscribeLink,
        ] {
            assert_eq!(ConsentSource::parse(s.as_str()), Some(s));
        }
    }
}
