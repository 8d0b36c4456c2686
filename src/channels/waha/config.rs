//! WAHA settings: where the server is (`WAHA_URL`), its API key (`WAHA_API_KEY`) and the key its
//! webhooks are signed with (`WAHA_HMAC_KEY`). Each tenant's session name is a tenant setting.

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub struct WahaConfig {
    /// `WAHA_URL`, for example `http://waha:3000`.
    pub url: Option<String>,
    /// `WAHA_API_KEY`, sent as `X-Api-Key`.
    pub api_key: Option<SecretString>,
    /// `WAHA_HMAC_KEY`: when set, every webhook must carry a matching `X-Webhook-Hmac`.
    pub hmac_key: Option<SecretString>,
}

/// `[waha]` in `parley.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WahaFile {
    url: Option<String>,
    api_key: Option<SecretString>,
    hmac_key: Option<SecretString>,
}

impl WahaConfig {
    pub(crate) fn load(
        var: &dyn Fn(&str) -> Option<String>,
        file: WahaFile,
    ) -> Result<Self, ConfigError> {
        let config = WahaConfig {
            url: var("WAHA_URL")
                .or(file.url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            api_key: var("WAHA_API_KEY").map(SecretString::from).or(file.api_key),
            hmac_key: var("WAHA_HMAC_KEY")
                .map(SecretString::from)
                .or(file.hmac_key),
        };
        if let Some(url) = &config.url {
            crate::config::check_http_url("WAHA_URL", url)?;
        }
        Ok(config)
    }
}
