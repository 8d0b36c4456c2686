//! A tenant's own addresses on the channels beyond WhatsApp Cloud: its Twilio number, its WAHA
//! session and its email address. They route inbound traffic to the tenant and are what replies
//! are sent from. The `default` tenant takes them from the environment (`TWILIO_FROM_NUMBER`,
//! `WAHA_SESSION`, `EMAIL_FROM`), other tenants from `[tenants.<id>]` in `parley.toml`
//! (`twilio_from_number`, `waha_session`, `email_from`).

use std::str::FromStr;

use lettre::message::Mailbox;

use crate::config::{Config, ConfigError};
use crate::domain::TenantId;

#[derive(Debug, Clone, Default)]
pub struct TenantChannels {
    /// The Twilio number replies leave from, in E.164 (`+14155238886`); `whatsapp:` is added for
    /// WhatsApp conversations.
    pub twilio_from: Option<String>,
    /// The WAHA session the tenant's WhatsApp number runs in.
    pub waha_session: Option<String>,
    /// The address email replies come from (`Skyline Habitat <hello@skyline.example>`); inbound
    /// mail to it (or to its plus-addresses) belongs to the tenant.
    pub email_from: Option<Mailbox>,
}

impl TenantChannels {
    pub(crate) fn load(
        tenant: &str,
        twilio_from: Option<String>,
        waha_session: Option<String>,
        email_from: Option<String>,
    ) -> Result<Self, ConfigError> {
        let twilio_from = twilio_from
            .map(|n| {
                let n = n.trim().trim_start_matches("whatsapp:").to_owned();
                let digits = n.strip_prefix('+').unwrap_or("");
                if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ConfigError::new(format!(
                        "the Twilio number of tenant `{tenant}` (TWILIO_FROM_NUMBER or twilio_from_number) must be in E.164 form, like +14155238886"
                    )));
                }
                Ok(n)
            })
            .transpose()?;
        let email_from = email_from
            .map(|raw| {
                Mailbox::from_str(raw.trim()).map_err(|_| {
                    ConfigError::new(format!(
                        "the email address of tenant `{tenant}` (EMAIL_FROM or email_from) must be an address like `Name <hello@example.com>`"
                    ))
                })
            })
            .transpose()?;
        Ok(Self {
            twilio_from,
            waha_session: waha_session.filter(|s| !s.trim().is_empty()),
            email_from,
        })
    }
}

/// The tenant owning Twilio number `number` (E.164, without `whatsapp:`), or `default` when no
/// tenant claims it (a single-business setup need not configure a number to receive).
pub fn tenant_for_twilio_number(config: &Config, number: &str) -> TenantId {
    config
        .tenants
        .values()
        .find(|t| t.channels.twilio_from.as_deref() == Some(number))
        .map(|t| t.id.clone())
        .unwrap_or_else(TenantId::default_tenant)
}

/// The tenant whose WAHA session is `session`; the `default` tenant owns the session named
/// `default` unless it configures another.
pub fn tenant_for_waha_session(config: &Config, session: &str) -> Option<TenantId> {
    config
        .tenants
        .values()
        .find(|t| {
            t.channels
                .waha_session
                .as_deref()
                .unwrap_or(if t.id == TenantId::default_tenant() {
                    "default"
                } else {
                    ""
                })
                == session
        })
        .map(|t| t.id.clone())
}

/// The tenant an email to `recipient` belongs to: the one whose address matches it, ignoring a
/// `+tag`; `default` otherwise.
pub fn tenant_for_email(config: &Config, recipient: &str) -> TenantId {
    let base = |address: &str| -> String {
        let address = address.trim().to_ascii_lowercase();
        match address.split_once('@') {
            Some((local, domain)) => {
                let local = local.split('+').next().unwrap_or(local);
                format!("{local}@{domain}")
            }
            None => address,
        }
    };
    let wanted = base(recipient);
    config
        .tenants
        .values()
        .find(|t| {
            t.channels
                .email_from
                .as_ref()
                .is_some_and(|m| base(m.email.as_ref()) == wanted)
        })
        .map(|t| t.id.clone())
        .unwrap_or_else(TenantId::default_tenant)
}
