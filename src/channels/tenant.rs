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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(pairs: &[(&str, &str)], toml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, toml).unwrap();
        let mut env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("PARLEY_CONFIG".into(), path.display().to_string());
        Config::from_sources(&env).map_err(|e| e.to_string())
    }

    const TWO_TENANTS: &str = r#"
        [tenants.acme]
        name = "Acme Homes"
        twilio_from_number = "+15005550006"
        waha_session = "acme"
        email_from = "Acme <sales@acme.example>"
    "#;

    #[test]
    fn numbers_sessions_and_addresses_select_their_tenant() {
        let config = config(
            &[
                ("TWILIO_FROM_NUMBER", "+14155238886"),
                ("EMAIL_FROM", "Skyline <hello@skyline.example>"),
            ],
            TWO_TENANTS,
        )
        .unwrap();
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(tenant_for_twilio_number(&config, "+15005550006"), acme);
        assert_eq!(
            tenant_for_twilio_number(&config, "+14155238886"),
            TenantId::default_tenant()
        );
        assert_eq!(
            tenant_for_twilio_number(&config, "+19999999999"),
            TenantId::default_tenant()
        );
        assert_eq!(tenant_for_waha_session(&config, "acme"), Some(acme.clone()));
        assert_eq!(
            tenant_for_waha_session(&config, "default"),
            Some(TenantId::default_tenant())
        );
        assert_eq!(tenant_for_waha_session(&config, "other"), None);
        assert_eq!(tenant_for_email(&config, "Sales+1234@ACME.example"), acme);
        assert_eq!(
            tenant_for_email(&config, "someone@else.example"),
            TenantId::default_tenant()
        );
    }

    #[test]
    fn channel_settings_are_checked_with_a_sentence_naming_them() {
        let err = config(&[("TWILIO_FROM_NUMBER", "4155238886")], "").unwrap_err();
        assert!(err.contains("TWILIO_FROM_NUMBER"), "{err}");
        let err = config(&[("EMAIL_FROM", "not an address")], "").unwrap_err();
        assert!(err.contains("EMAIL_FROM"), "{err}");
        let err = config(&[("TWILIO_ACCOUNT_SID", "AC123")], "").unwrap_err();
        assert!(err.contains("TWILIO_AUTH_TOKEN"), "{err}");
        let err = config(&[("SMTP_URL", "http://mail")], "").unwrap_err();
        assert!(err.contains("SMTP_URL"), "{err}");
        let err = config(&[("WAHA_URL", "waha:3000")], "").unwrap_err();
        assert!(err.contains("WAHA_URL"), "{err}");
        let err = config(&[("EMAIL_WEBHOOK_USER", "u")], "").unwrap_err();
        assert!(err.contains("EMAIL_WEBHOOK_PASSWORD"), "{err}");
    }

    #[test]
    fn the_twilio_webhook_url_defaults_to_the_public_url() {
        let config = config(&[("PARLEY_PUBLIC_URL", "https://parley.example.com/")], "").unwrap();
        assert_eq!(
            config.twilio.webhook_url.as_deref(),
            Some("https://parley.example.com/webhooks/twilio")
        );
        let secrets = config_debug(&[
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "twilio-secret-token"),
            ("SMTP_URL", "smtp://user:smtp-password@mail:587"),
            ("WAHA_API_KEY", "waha-secret-key"),
        ]);
        for secret in ["twilio-secret-token", "smtp-password", "waha-secret-key"] {
            assert!(!secrets.contains(secret), "{secret} leaked");
        }
    }

    fn config_debug(pairs: &[(&str, &str)]) -> String {
        format!("{:?}", config(pairs, "").unwrap())
    }
}
