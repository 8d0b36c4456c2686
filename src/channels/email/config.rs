//! Email settings: the Mailgun signing key and how fresh a signature must be, how the SendGrid
//! and Postmark webhooks are protected (a secret path segment and/or basic auth), the SMTP server
//! replies leave through, and the key unsubscribe links are signed with.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `MAILGUN_SIGNING_KEY`: verifies Mailgun's `signature` (HMAC-SHA256 of timestamp + token).
    pub mailgun_signing_key: Option<SecretString>,
    /// `MAILGUN_MAX_AGE_SECS`: an older Mailgun timestamp (or one this far in the future) is
    /// refused, and tokens are remembered this long to refuse replays. Default 300.
    pub mailgun_max_age: Duration,
    /// `EMAIL_WEBHOOK_SECRET`: SendGrid and Postmark post to `/webhooks/email/{provider}/{secret}`.
    pub webhook_secret: Option<SecretString>,
    /// `EMAIL_WEBHOOK_USER` and `EMAIL_WEBHOOK_PASSWORD`: basic auth SendGrid and Postmark send
    /// (`https://user:password@host/webhooks/email/postmark`).
    pub webhook_basic_auth: Option<(String, SecretString)>,
    /// `SMTP_URL`: `smtp://host:port` (plain or STARTTLS with `?tls=required`) or
    /// `smtps://user:password@host:465`.
    pub smtp_url: Option<SecretString>,
    /// `PARLEY_UNSUBSCRIBE_SECRET`: signs unsubscribe links (default: derived from the admin
    /// token). Every replica must share it.
    pub unsubscribe_secret: Option<SecretString>,
    /// Where unsubscribe links point (`PARLEY_PUBLIC_URL`).
    pub public_url: Option<String>,
}

/// `[email]` in `parley.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailFile {
    mailgun_signing_key: Option<SecretString>,
    mailgun_max_age_secs: Option<u64>,
    webhook_secret: Option<SecretString>,
    webhook_user: Option<String>,
    webhook_password: Option<SecretString>,
    smtp_url: Option<SecretString>,
    unsubscribe_secret: Option<SecretString>,
}

impl EmailConfig {
    pub(crate) fn load(
        var: &dyn Fn(&str) -> Option<String>,
        file: EmailFile,
        public_url: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let secret = |name: &str| var(name).map(SecretString::from);
        let max_age = match var("MAILGUN_MAX_AGE_SECS") {
            Some(raw) => raw.trim().parse().map_err(|_| {
                ConfigError::new(format!(
                    "MAILGUN_MAX_AGE_SECS `{raw}` is not a whole number of seconds"
                ))
            })?,
            None => file.mailgun_max_age_secs.unwrap_or(300),
        };
        let user = var("EMAIL_WEBHOOK_USER").or(file.webhook_user);
        let password = secret("EMAIL_WEBHOOK_PASSWORD").or(file.webhook_password);
        let webhook_basic_auth = match (user, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    "EMAIL_WEBHOOK_USER and EMAIL_WEBHOOK_PASSWORD must be set together",
                ));
            }
        };
        let smtp_url = secret("SMTP_URL").or(file.smtp_url);
        if let Some(url) = &smtp_url {
            use secrecy::ExposeSecret;
            let scheme = url.expose_secret().split("://").next().unwrap_or("");
            if !matches!(scheme, "smtp" | "smtps") {
                return Err(ConfigError::new(
                    "SMTP_URL must be an smtp:// or smtps:// URL, for example smtp://localhost:25",
                ));
            }
        }
        Ok(EmailConfig {
            mailgun_signing_key: secret("MAILGUN_SIGNING_KEY").or(file.mailgun_signing_key),
            mailgun_max_age: Duration::from_secs(max_age),
            webhook_secret: secret("EMAIL_WEBHOOK_SECRET").or(file.webhook_secret),
            webhook_basic_auth,
            smtp_url,
            unsubscribe_secret: secret("PARLEY_UNSUBSCRIBE_SECRET").or(file.unsubscribe_secret),
            public_url: public_url.map(str::to_owned),
        })
    }
}
