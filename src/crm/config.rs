//! CRM settings: delivery (attempts, backoff, batch size) in `[crm]`, and each tenant's adapters.
//! The environment configures the default tenant (`HUBSPOT_TOKEN`, `HUBSPOT_API_BASE`,
//! `MAUTIC_URL`, `CRM_WEBHOOK_URL`, `CRM_WEBHOOK_SECRET`, `SLACK_WEBHOOK_URL`); other tenants
//! come from `[crm.tenants.<id>]` with the same settings in lower case.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::AdapterKind;
use crate::domain::TenantId;

/// HubSpot's API root unless `HUBSPOT_API_BASE` says otherwise.
pub const DEFAULT_HUBSPOT_API_BASE: &str = "https://api.hubapi.com";

/// CRM delivery settings and adapters, validated.
#[derive(Debug, Clone)]
pub struct CrmConfig {
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// HubSpot inputs per batch call (HubSpot allows 100).
    pub batch_size: usize,
    /// How often the worker looks for due jobs when nobody woke it.
    pub poll_interval: Duration,
    /// How long a claimed job stays claimed.
    pub lease: Duration,
    /// Bound on one CRM call.
    pub timeout: Duration,
    pub tenants: BTreeMap<TenantId, TenantCrm>,
}

/// One tenant's adapters.
#[derive(Debug, Clone, Default)]
pub struct TenantCrm {
    pub hubspot: Option<HubSpotSettings>,
    pub mautic: Option<MauticSettings>,
    pub webhook: Option<WebhookSettings>,
    pub slack: Option<SlackSettings>,
}

impl TenantCrm {
    /// The adapters configured, in a fixed order.
    pub fn adapters(&self) -> Vec<AdapterKind> {
        let mut adapters = Vec::new();
        if self.hubspot.is_some() {
            adapters.push(AdapterKind::Hubspot);
        }
        if self.mautic.is_some() {
            adapters.push(AdapterKind::Mautic);
        }
        if self.webhook.is_some() {
            adapters.push(AdapterKind::Webhook);
        }
        if self.slack.is_some() {
            adapters.push(AdapterKind::Slack);
        }
        adapters
    }
}

#[derive(Debug, Clone)]
pub struct HubSpotSettings {
    pub api_base: String,
    /// A private app's access token.
    pub token: SecretString,
}

#[derive(Debug, Clone)]
pub struct MauticSettings {
    /// The Mautic root, without credentials.
    pub base: String,
    /// Basic auth, from the URL's user info (`https://user:pass@mautic.example.com`).
    pub username: String,
    pub password: SecretString,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    /// The key bytes (the base64 part after `whsec_`, decoded).
    pub key: SecretBytes,
}

/// Key bytes that never show in `Debug`.
#[derive(Clone)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// The incoming-webhook URL (it is the credential).
    pub url: SecretString,
}

/// `[crm]` in `parley.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmFile {
    max_attempts: Option<u32>,
    first_retry_ms: Option<u64>,
    max_retry_ms: Option<u64>,
    batch_size: Option<usize>,
    poll_interval_ms: Option<u64>,
    lease_ms: Option<u64>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantCrmFile>,
}

/// `[crm.tenants.<id>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCrmFile {
    hubspot_token: Option<SecretString>,
    hubspot_api_base: Option<String>,
    mautic_url: Option<SecretString>,
    webhook_url: Option<String>,
    webhook_secret: Option<SecretString>,
    slack_webhook_url: Option<SecretString>,
}

impl CrmConfig {
    /// The file section with the environment's settings for the default tenant, checked.
    pub fn resolve(
        file: Option<CrmFile>,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut file = file.unwrap_or_default();
        let default_file = file.tenants.remove("default").unwrap_or_default();
        let default = TenantCrmFile {
            hubspot_token: var("HUBSPOT_TOKEN")
                .map(SecretString::from)
                .or(default_file.hubspot_token),
            hubspot_api_base: var("HUBSPOT_API_BASE").or(default_file.hubspot_api_base),
            mautic_url: var("MAUTIC_URL")
                .map(SecretString::from)
                .or(default_file.mautic_url),
            webhook_url: var("CRM_WEBHOOK_URL").or(default_file.webhook_url),
            webhook_secret: var("CRM_WEBHOOK_SECRET")
                .map(SecretString::from)
                .or(default_file.webhook_secret),
            slack_webhook_url: var("SLACK_WEBHOOK_URL")
                .map(SecretString::from)
                .or(default_file.slack_webhook_url),
        };
        let mut tenants = BTreeMap::new();
        tenants.insert(
            TenantId::default_tenant(),
            tenant(default, &EnvNames::default_tenant())?,
        );
        for (raw, settings) in file.tenants {
            let id = TenantId::parse(&raw).map_err(|e| format!("[crm.tenants.{raw}]: {e}"))?;
            tenants.insert(id, tenant(settings, &EnvNames::file(&raw))?);
        }
        let config = CrmConfig {
            max_attempts: file.max_attempts.unwrap_or(12),
            first_retry: Duration::from_millis(file.first_retry_ms.unwrap_or(2_000)),
            max_retry: Duration::from_millis(file.max_retry_ms.unwrap_or(3_600_000)),
            batch_size: file.batch_size.unwrap_or(100),
            poll_interval: Duration::from_millis(file.poll_interval_ms.unwrap_or(1_000)),
            lease: Duration::from_millis(file.lease_ms.unwrap_or(60_000)),
            timeout: Duration::from_millis(file.timeout_ms.unwrap_or(10_000)),
            tenants,
        };
        if config.max_attempts == 0 {
            return Err("crm.max_attempts must be at least 1".into());
        }
        if !(1..=100).contains(&config.batch_size) {
            return Err("crm.batch_size must be between 1 and 100 (HubSpot's limit)".into());
        }
        Ok(config)
    }

    /// A tenant's adapters (none when the tenant has no CRM).
    pub fn tenant(&self, tenant: &TenantId) -> Option<&TenantCrm> {
        self.tenants.get(tenant)
    }
}

/// The setting names to quote in errors.
struct EnvNames {
    hubspot_api_base: String,
    mautic_url: String,
    webhook_url: String,
    webhook_secret: String,
    slack: String,
}

impl EnvNames {
    fn default_tenant() -> Self {
        Self {
            hubspot_api_base: "HUBSPOT_API_BASE".into(),
            mautic_url: "MAUTIC_URL".into(),
            webhook_url: "CRM_WEBHOOK_URL".into(),
            webhook_secret: "CRM_WEBHOOK_SECRET".into(),
            slack: "SLACK_WEBHOOK_URL".into(),
        }
    }
    fn file(tenant: &str) -> Self {
        let name = |key: &str| format!("crm.tenants.{tenant}.{key}");
        Self {
            hubspot_api_base: name("hubspot_api_base"),
            mautic_url: name("mautic_url"),
            webhook_url: name("webhook_url"),
            webhook_secret: name("webhook_secret"),
            slack: name("slack_webhook_url"),
        }
    }
}

fn tenant(file: TenantCrmFile, names: &EnvNames) -> Result<TenantCrm, String> {
    let hubspot = match file.hubspot_token {
        Some(token) => {
            let api_base = file
                .hubspot_api_base
                .unwrap_or_else(|| DEFAULT_HUBSPOT_API_BASE.to_owned())
                .trim_end_matches('/')
                .to_owned();
            http_url(&names.hubspot_api_base, &api_base)?;
            Some(HubSpotSettings { api_base, token })
        }
        None => None,
    };
    let mautic = match file.mautic_url {
        Some(raw) => {
            let mut url = url::Url::parse(raw.expose_secret())
                .ok()
                .filter(|u| u.scheme() == "http" || u.scheme() == "https")
                .ok_or_else(|| format!("{} is not an http(s) URL", names.mautic_url))?;
            let username = url.username().to_owned();
            let password = url.password().unwrap_or("").to_owned();
            if username.is_empty() {
                return Err(format!(
                    "{} must carry the API user, as https://user:password@mautic.example.com",
                    names.mautic_url
                ));
            }
            let username = percent_decode(&username);
            let password = SecretString::from(percent_decode(&password));
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(MauticSettings {
                base: url.as_str().trim_end_matches('/').to_owned(),
                username,
                password,
            })
        }
        None => None,
    };
    let webhook = match (file.webhook_url, file.webhook_secret) {
        (Some(url), Some(secret)) => {
            http_url(&names.webhook_url, &url)?;
            let encoded = secret.expose_secret();
            let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
            let key = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| {
                    format!(
                        "{} must be whsec_ followed by base64 (the Standard Webhooks secret format)",
                        names.webhook_secret
                    )
                })?;
            Some(WebhookSettings {
                url,
                key: SecretBytes(key),
            })
        }
        (Some(_), None) => {
            return Err(format!(
                "{} is required with {}: every webhook is signed",
                names.webhook_secret, names.webhook_url
            ));
        }
        (None, Some(_)) => {
            return Err(format!(
                "{} is set but {} is not",
                names.webhook_secret, names.webhook_url
            ));
        }
        (None, None) => None,
    };
    let slack = match file.slack_webhook_url {
        Some(url) => {
            http_url(&names.slack, url.expose_secret())
                .map_err(|_| format!("{} is not an http(s) URL", names.slack))?;
            Some(SlackSettings { url })
        }
        None => None,
    };
    Ok(TenantCrm {
        hubspot,
        mautic,
        webhook,
        slack,
    })
}

fn http_url(setting: &str, raw: &str) -> Result<(), String> {
    match url::Url::parse(raw) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(format!("{setting} `{raw}` is not an http(s) URL")),
    }
}

fn percent_decode(raw: &str) -> String {
    url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(pairs: &[(&str, &str)]) -> Result<CrmConfig, String> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CrmConfig::resolve(None, &|name| env.get(name).cloned())
    }

    #[test]
    fn no_settings_means_no_adapters() {
        let config = resolve(&[]).unwrap();
        assert!(
            config
                .tenant(&TenantId::default_tenant())
                .unwrap()
                .adapters()
                .is_empty()
        );
    }

    #[test]
    fn every_adapter_can_be_configured_for_the_default_tenant() {
        let config = resolve(&[
            ("HUBSPOT_TOKEN", "pat-1"),
            ("MAUTIC_URL", "https://api%40x:p%3Ass@mautic.example.com/"),
            ("CRM_WEBHOOK_URL", "https://hooks.example.com/parley"),
            (
                "CRM_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/X",
            ),
        ])
        .unwrap();
        let tenant = config.tenant(&TenantId::default_tenant()).unwrap();
        assert_eq!(
            tenant.adapters(),
            [
                AdapterKind::Hubspot,
                AdapterKind::Mautic,
                AdapterKind::Webhook,
                AdapterKind::Slack
            ]
        );
        assert_eq!(
            tenant.hubspot.as_ref().unwrap().api_base,
            DEFAULT_HUBSPOT_API_BASE
        );
        let mautic = tenant.mautic.as_ref().unwrap();
        assert_eq!(mautic.base, "https://mautic.example.com");
        assert_eq!(mautic.username, "api@x");
        assert_eq!(mautic.password.expose_secret(), "p:ss");
        let debug = format!("{config:?}");
        assert!(!debug.contains("pat-1") && !debug.contains("p:ss") && !debug.contains("T/B/X"));
    }

    #[test]
    fn other_tenants_have_their_own_adapters_from_the_file() {
        let file: CrmFile = toml::from_str(
            r#"
            max_attempts = 5
            [tenants.acme]
            hubspot_token = "pat-acme"
            slack_webhook_url = "https://hooks.slack.com/services/A/B/C"
            "#,
        )
        .unwrap();
        let config = CrmConfig::resolve(Some(file), &|_| None).unwrap();
        assert_eq!(config.max_attempts, 5);
        let acme = config.tenant(&TenantId::parse("acme").unwrap()).unwrap();
        assert_eq!(acme.adapters(), [AdapterKind::Hubspot, AdapterKind::Slack]);
        assert!(
            config
                .tenant(&TenantId::default_tenant())
                .unwrap()
                .adapters()
                .is_empty()
        );
        let typo = toml::from_str::<CrmFile>("[tenants.acme]\nhubspot_tokn = \"x\"");
        assert!(typo.is_err());
    }

    #[test]
    fn a_webhook_without_its_secret_is_refused_by_name() {
        let err = resolve(&[("CRM_WEBHOOK_URL", "https://hooks.example.com")]).unwrap_err();
        assert!(err.contains("CRM_WEBHOOK_SECRET"), "{err}");
        let err = resolve(&[
            ("CRM_WEBHOOK_URL", "https://hooks.example.com"),
            ("CRM_WEBHOOK_SECRET", "whsec_not base64!"),
        ])
        .unwrap_err();
        assert!(err.contains("CRM_WEBHOOK_SECRET"), "{err}");
        let err = resolve(&[("MAUTIC_URL", "https://mautic.example.com")]).unwrap_err();
        assert!(err.contains("MAUTIC_URL"), "{err}");
    }
}
