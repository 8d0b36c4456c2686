//! Identifiers. Contact and conversation ids are derived deterministically from what identifies
//! them at the edge (tenant, channel, address or thread), so a webhook can record a message under
//! its conversation without a database round trip, and every replica derives the same id.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use super::Channel;

/// Namespace for UUIDv5 ids derived by Parley.
const PARLEY_NAMESPACE: Uuid = Uuid::from_u128(0x7a1f_4c0e_9b52_4d8e_a3c6_5e21_0f9d_6b37);

/// A business using Parley. `default` unless `parley.toml` configures more.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Tenant ids are short slugs: ASCII letters, digits, `-` and `_`, 1 to 64 characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "tenant id `{raw}` must be 1 to 64 ASCII letters, digits, `-` or `_`"
            ))
        }
    }
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(raw).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A person who talks to the business on one channel.
    ContactId
);
uuid_id!(
    /// One thread between a contact and the business on one channel.
    ConversationId
);
uuid_id!(
    /// A message, inbound or outbound.
    MessageId
);

impl ContactId {
    /// The contact behind `address` (a WhatsApp id, a visitor id, an email address) on `channel`.
    pub fn derive(tenant: &TenantId, channel: Channel, address: &str) -> Self {
        let key = format!("contact\0{tenant}\0{channel}\0{address}");
        Self(Uuid::new_v5(&PARLEY_NAMESPACE, key.as_bytes()))
    }
}

impl ConversationId {
    /// The conversation for `thread` on `channel`: the sender's address for chat channels, the
    /// thread's root Message-ID for email.
    pub fn derive(tenant: &TenantId, channel: Channel, thread: &str) -> Self {
        let key = format!("conversation\0{tenant}\0{channel}\0{thread}");
        Self(Uuid::new_v5(&PARLEY_NAMESPACE, key.as_bytes()))
    }
}

impl MessageId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

/// The id a provider gave a message (`wamid...`, Twilio `SM...`, an email Message-ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderMessageId(String);

impl ProviderMessageId {
    /// Provider ids are non-empty and at most 512 bytes.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 512 {
            Err("a provider message id must be 1 to 512 bytes".to_owned())
        } else {
            Ok(Self(raw.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct_per_channel() {
        let t = TenantId::default_tenant();
        let a = ConversationId::derive(&t, Channel::Whatsapp, "15551234567");
        assert_eq!(
            a,
            ConversationId::derive(&t, Channel::Whatsapp, "15551234567")
        );
        assert_ne!(a, ConversationId::derive(&t, Channel::Web, "15551234567"));
        let other = TenantId::parse("acme").unwrap();
        assert_ne!(
            a,
            ConversationId::derive(&other, Channel::Whatsapp, "15551234567")
        );
    }

    #[test]
    fn tenant_ids_reject_odd_characters() {
        assert!(TenantId::parse("acme-realty_2").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a b").is_err());
        assert!(TenantId::parse(&"x".repeat(65)).is_err());
    }
}
