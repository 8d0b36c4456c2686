//! Twilio settings: one account for the server (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`), the
//! public URL Twilio calls (signatures cover it), and each tenant's sending number (in the
//! tenant's channel settings).

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::ConfigError;

/// Where the Messages API lives unless `TWILIO_API_BASE` says otherwise.
pub const DEFAULT_TWILIO_API_BASE: &str = "https://api.twilio.com";

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `TWILIO_ACCOUNT_SID`.
    pub account_sid: Option<String>,
    /// `TWILIO_AUTH_TOKEN`: verifies `X-Twilio-Signature` and authenticates sends.
    pub auth_token: Option<SecretString>,
    /// `TWILIO_API_BASE`.
    pub api_base: String,
    /// `TWILIO_WEBHOOK_URL`: the URL configured in Twilio for `/webhooks/twilio`, exactly as
    /// entered there (default `PARLEY_PUBLIC_URL` + `/webhooks/twilio`). Also sent as the
    /// status callback of every message Parley sends.
    pub webhook_url: Option<String>,
}

/// `[twilio]` in `parley.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioFile {
    account_sid: Option<String>,
    auth_token: Option<SecretString>,
    api_base: Option<String>,
    webhook_url: Option<String>,
}

impl TwilioConfig {
    pub(crate) fn load(
        var: &dyn Fn(&str) -> Option<String>,
        file: TwilioFile,
        public_url: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let config = TwilioConfig {
            account_sid: var("TWILIO_ACCOUNT_SID").or(file.account_sid),
            auth_token: var("TWILIO_AUTH_TOKEN")
                .map(SecretString::from)
                .or(file.auth_token),
            api_base: var("TWILIO_API_BASE")
                .or(file.api_base)
                .unwrap_or_else(|| DEFAULT_TWILIO_API_BASE.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            webhook_url: var("TWILIO_WEBHOOK_URL")
                .or(file.webhook_url)
                .or_else(|| public_url.map(|base| format!("{base}/webhooks/twilio"))),
        };
        crate::config::check_http_url("TWILIO_API_BASE", &config.api_base)?;
        if let Some(url) = &config.webhook_url {
            crate::config::check_http_url("TWILIO_WEBHOOK_URL", url)?;
        }
        if let Some(sid) = &config.account_sid
            && (!sid.starts_with("AC") || !sid[2..].bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(ConfigError::new(
                "TWILIO_ACCOUNT_SID must be the account SID from the Twilio console (AC followed by letters and digits)",
            ));
        }
        if config.account_sid.is_some() != config.auth_token.is_some() {
            return Err(ConfigError::new(
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together",
            ));
        }
        Ok(config)
    }
}
