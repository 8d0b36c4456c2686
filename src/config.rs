//! Configuration: built-in defaults, then `parley.toml` (path in `PARLEY_CONFIG`, else
//! `./parley.toml` when present), then environment variables, which win.
//!
//! Every problem stops start-up with one sentence naming the setting. Tokens, keys and URLs that
//! may carry passwords are `SecretString`s: they never appear in `Debug` output, logs or errors.
//!
//! The environment configures the `default` tenant; further tenants come from `[tenants.<id>]`
//! tables in `parley.toml`. A WhatsApp `phone_number_id` selects its tenant.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::agents::guardrails::GuardrailSettings;
use crate::agents::handoff::HandoffSettings;
use crate::agents::scheduling::SchedulingSettings;
use crate::consent::{ConsentSettings, TemplateSettings};
use crate::domain::TenantId;

/// Where the graph API lives unless `WHATSAPP_API_BASE` says otherwise.
pub const DEFAULT_WHATSAPP_API_BASE: &str = "https://graph.facebook.com/v21.0";

/// A configuration problem, as one sentence that names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PARLEY_LISTEN`: the HTTP address.
    pub listen: SocketAddr,
    /// `PARLEY_DATA_DIR`: SQLite file, vector index and other local state.
    pub data_dir: PathBuf,
    /// `PARLEY_PROMPTS_DIR`: intents, agents and reply templates.
    pub prompts_dir: PathBuf,
    /// `PARLEY_KNOWLEDGE_DIR`: the demo business's documents, loaded at first start.
    pub knowledge_dir: PathBuf,
    /// `PARLEY_ADMIN_TOKEN`: bearer token for `/api/v1` automation.
    pub admin_token: Option<SecretString>,
    /// `DATABASE_URL`: PostgreSQL when set, SQLite in the data dir otherwise.
    pub database_url: Option<SecretString>,
    /// `REDIS_URL`: Redis when set, in-process otherwise.
    pub redis_url: Option<SecretString>,
    /// `PARLEY_REDIS_PREFIX`: the key prefix in Redis, so several deployments can share one.
    pub redis_prefix: String,
    pub log_format: LogFormat,
    pub pipeline: PipelineSettings,
    pub llm: LlmConfig,
    pub whatsapp: WhatsAppConfig,
    /// `PARLEY_PUBLIC_URL`: where the internet reaches this server (webhook and unsubscribe links).
    pub public_url: Option<String>,
    pub twilio: crate::channels::twilio::TwilioConfig,
    pub waha: crate::channels::waha::WahaConfig,
    pub email: crate::channels::email::EmailConfig,
    /// Tenants by id; `default` always exists.
    pub tenants: BTreeMap<TenantId, TenantConfig>,
    /// The key that names contacts in the consent ledger (`PARLEY_CONSENT_KEY`); generated and
    /// kept in the database when unset.
    pub consent_key: Option<SecretString>,
    /// `[leads]`: scoring weights, tiers, temperature rules.
    pub leads: crate::leads::LeadsConfig,
    /// `[crm]` and the CRM adapters' variables.
    pub crm: crate::crm::CrmConfig,
    /// The knowledge base: vector index, chunking and upload limits.
    pub knowledge: crate::knowledge::KnowledgeSettings,
    /// `PARLEY_TRUSTED_PROXIES`: reverse proxies whose `X-Forwarded-For` names the client (the
    /// sign-in rate limit counts per client address).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// `PARLEY_WORKERS`: conversations processed at once in this replica.
    pub workers: usize,
    /// `PARLEY_SENDERS`: outbound messages delivered at once in this replica.
    pub senders: usize,
    /// Largest accepted webhook body (Meta sends up to 3 MB).
    pub max_body_bytes: usize,
    /// Outbound attempts before a message is marked failed.
    pub max_send_attempts: u32,
    /// How long a claimed outbound message stays claimed before another sender may retry it.
    pub send_lease: Duration,
    /// How often the recovery sweep looks for recorded but unprocessed messages.
    pub recovery_interval: Duration,
    /// How often unclaimed handoffs are checked against their SLA.
    pub handoff_check_interval: Duration,
    /// `PARLEY_MEMORY_WINDOW`: recent turns remembered per conversation; older ones are folded
    /// into the conversation's rolling summary.
    pub memory_window: usize,
}

/// The OpenAI-compatible language model, when configured.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// `OPENAI_API_KEY`: without it the offline brain answers.
    pub api_key: Option<SecretString>,
    /// `OPENAI_BASE_URL`: any OpenAI-compatible endpoint.
    pub base_url: Option<String>,
    /// `PARLEY_CHAT_MODEL`.
    pub chat_model: String,
    /// `PARLEY_EMBEDDING_MODEL`.
    pub embedding_model: Option<String>,
    /// `PARLEY_LLM_TIMEOUT_MS`: beyond it the offline brain answers that message.
    pub timeout: Duration,
    /// `PARLEY_LLM_COOLDOWN_MS`: after a timeout, rate limit or server error the model is not
    /// asked for this long (the offline brain answers at once); 0 turns it off.
    pub cooldown: Duration,
}

/// WhatsApp Cloud API settings shared by every tenant (one Meta app).
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// `WHATSAPP_VERIFY_TOKEN`: answers Meta's subscription handshake.
    pub verify_token: Option<SecretString>,
    /// `WHATSAPP_APP_SECRET`: verifies `X-Hub-Signature-256`.
    pub app_secret: Option<SecretString>,
    /// `WHATSAPP_API_BASE`.
    pub api_base: String,
}

/// One business using Parley.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub id: TenantId,
    /// The business's name, used in replies.
    pub name: String,
    pub whatsapp: Option<TenantWhatsApp>,
    /// The tenant's Twilio number, WAHA session and email address.
    pub channels: crate::channels::TenantChannels,
    /// The tenant's consent policy (`[tenants.<id>.consent]`, else `[consent]`, else defaults).
    pub consent: ConsentSettings,
    /// Business hours, SLA and texts of handoffs (`[tenants.<id>.handoff]`, else `[handoff]`).
    pub handoff: HandoffSettings,
    /// Banned phrases, allowed link domains, disclaimer (`[tenants.<id>.guardrails]`, else
    /// `[guardrails]`).
    pub guardrails: GuardrailSettings,
    /// Visit slots the scheduling agent offers (`[tenants.<id>.scheduling]`, else `[scheduling]`).
    pub scheduling: SchedulingSettings,
    /// Approved WhatsApp templates by name (`[tenants.<id>.templates.<name>]`).
    pub templates: BTreeMap<String, TemplateSettings>,
}

/// A tenant's WhatsApp number.
#[derive(Debug, Clone)]
pub struct TenantWhatsApp {
    /// `WHATSAPP_PHONE_NUMBER_ID` for the default tenant.
    pub phone_number_id: String,
    /// `WHATSAPP_ACCESS_TOKEN` for the default tenant.
    pub access_token: SecretString,
}

impl Config {
    /// Reads `parley.toml` (if any) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(&vars)
    }

    /// Builds the configuration from an explicit environment (tests use this).
    pub fn from_sources(env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let file = match env.get("PARLEY_CONFIG") {
            Some(path) => FileConfig::read(Path::new(path))?,
            None if Path::new("parley.toml").exists() => {
                FileConfig::read(Path::new("parley.toml"))?
            }
            None => FileConfig::default(),
        };
        Self::merge(file, env)
    }

    /// Defaults, then the file, then the environment.
    fn merge(file: FileConfig, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let secret = |name: &str| var(name).map(SecretString::from);

        let listen_raw = var("PARLEY_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = listen_raw.parse().map_err(|_| {
            ConfigError::new(format!(
                "PARLEY_LISTEN `{listen_raw}` is not a socket address; write host:port, for example 127.0.0.1:8080"
            ))
        })?;

        let log_format = match var("PARLEY_LOG_FORMAT")
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" | "pretty" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(format!(
                    "PARLEY_LOG_FORMAT `{other}` is not a log format; use `text` or `json`"
                )));
            }
        };

        let pipeline_file = file.pipeline.unwrap_or_default();
        let pipeline = PipelineSettings {
            workers: parse_number(
                "PARLEY_WORKERS",
                var("PARLEY_WORKERS"),
                pipeline_file.workers,
                16,
            )?,
            senders: parse_number(
                "PARLEY_SENDERS",
                var("PARLEY_SENDERS"),
                pipeline_file.senders,
                32,
            )?,
            max_body_bytes: parse_number(
                "PARLEY_MAX_BODY_BYTES",
                var("PARLEY_MAX_BODY_BYTES"),
                pipeline_file.max_body_bytes,
                3 * 1024 * 1024,
            )?,
            max_send_attempts: parse_number(
                "pipeline.max_send_attempts",
                None,
                pipeline_file.max_send_attempts,
                8,
            )?,
            send_lease: Duration::from_millis(parse_number(
                "pipeline.send_lease_ms",
                None,
                pipeline_file.send_lease_ms,
                30_000,
            )?),
            recovery_interval: Duration::from_millis(parse_number(
                "pipeline.recovery_interval_ms",
                None,
                pipeline_file.recovery_interval_ms,
                10_000,
            )?),
            handoff_check_interval: Duration::from_millis(parse_number(
                "PARLEY_HANDOFF_CHECK_MS",
                var("PARLEY_HANDOFF_CHECK_MS"),
                pipeline_file.handoff_check_interval_ms,
                15_000,
            )?),
            memory_window: parse_number(
                "PARLEY_MEMORY_WINDOW",
                var("PARLEY_MEMORY_WINDOW"),
                pipeline_file.memory_window,
                20,
            )?,
        };
        if pipeline.senders == 0 || pipeline.max_send_attempts == 0 {
            return Err(ConfigError::new(
                "PARLEY_SENDERS and pipeline.max_send_attempts must be at least 1",
            ));
        }

        let llm_file = file.llm.unwrap_or_default();
        let llm = LlmConfig {
            api_key: secret("OPENAI_API_KEY").or(llm_file.api_key),
            base_url: var("OPENAI_BASE_URL").or(llm_file.base_url),
            chat_model: var("PARLEY_CHAT_MODEL")
                .or(llm_file.chat_model)
                .unwrap_or_else(|| "gpt-4o-mini".to_owned()),
            embedding_model: var("PARLEY_EMBEDDING_MODEL").or(llm_file.embedding_model),
            timeout: Duration::from_millis(parse_number(
                "PARLEY_LLM_TIMEOUT_MS",
                var("PARLEY_LLM_TIMEOUT_MS"),
                llm_file.timeout_ms,
                8_000,
            )?),
            cooldown: Duration::from_millis(parse_number(
                "PARLEY_LLM_COOLDOWN_MS",
                var("PARLEY_LLM_COOLDOWN_MS"),
                llm_file.cooldown_ms,
                30_000,
            )?),
        };
        if let Some(base) = &llm.base_url {
            check_http_url("OPENAI_BASE_URL", base)?;
        }

        let wa_file = file.whatsapp.unwrap_or_default();
        let whatsapp = WhatsAppConfig {
            verify_token: secret("WHATSAPP_VERIFY_TOKEN").or(wa_file.verify_token),
            app_secret: secret("WHATSAPP_APP_SECRET").or(wa_file.app_secret),
            api_base: var("WHATSAPP_API_BASE")
                .or(wa_file.api_base)
                .unwrap_or_else(|| DEFAULT_WHATSAPP_API_BASE.to_owned())
                .trim_end_matches('/')
                .to_owned(),
        };
        check_http_url("WHATSAPP_API_BASE", &whatsapp.api_base)?;

        let trusted_proxies = match var("PARLEY_TRUSTED_PROXIES") {
            Some(raw) => raw.split(',').map(str::to_owned).collect(),
            None => file.trusted_proxies.clone().unwrap_or_default(),
        }
        .iter()
        .map(|raw| raw.trim())
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            raw.parse::<std::net::IpAddr>().map_err(|_| {
                ConfigError::new(format!(
                    "PARLEY_TRUSTED_PROXIES: `{raw}` is not an IP address (list proxy addresses, comma separated)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

        let public_url = var("PARLEY_PUBLIC_URL")
            .or(file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url {
            check_http_url("PARLEY_PUBLIC_URL", url)?;
        }
        let twilio = crate::channels::twilio::TwilioConfig::load(
            &var,
            file.twilio.unwrap_or_default(),
            public_url.as_deref(),
        )?;
        let waha = crate::channels::waha::WahaConfig::load(&var, file.waha.unwrap_or_default())?;
        let email = crate::channels::email::EmailConfig::load(
            &var,
            file.email.unwrap_or_default(),
            public_url.as_deref(),
        )?;

        let global_consent = file.consent.unwrap_or_default();
        global_consent
            .validate("consent")
            .map_err(ConfigError::new)?;
        let global_guardrails = file.guardrails.unwrap_or_default();
        let global_scheduling = file.scheduling.unwrap_or_default();
        let mut global_handoff = file.handoff.unwrap_or_default();
        if let Some(raw) = var("PARLEY_HIGH_VALUE_BUDGET") {
            let amount = raw
                .trim()
                .replace('_', "")
                .parse::<u64>()
                .ok()
                .filter(|a| *a > 0);
            global_handoff.high_value_budget = Some(amount.ok_or_else(|| {
                ConfigError::new(format!(
                    "PARLEY_HIGH_VALUE_BUDGET `{raw}` is not a positive whole amount, for example 20000000"
                ))
            })?);
        }
        global_handoff
            .validate("handoff")
            .map_err(ConfigError::new)?;
        let mut tenants = BTreeMap::new();
        let mut file_tenants = file.tenants;
        let default_file = file_tenants.remove("default").unwrap_or_default();
        let default_id = TenantId::default_tenant();
        let default_whatsapp = tenant_whatsapp(
            "default",
            var("WHATSAPP_PHONE_NUMBER_ID").or(default_file.whatsapp_phone_number_id),
            secret("WHATSAPP_ACCESS_TOKEN").or(default_file.whatsapp_access_token),
            "WHATSAPP_PHONE_NUMBER_ID",
            "WHATSAPP_ACCESS_TOKEN",
        )?;
        tenants.insert(
            default_id.clone(),
            TenantConfig {
                id: default_id,
                name: var("PARLEY_TENANT_NAME")
                    .or(default_file.name)
                    .unwrap_or_else(|| "Skyline Habitat".to_owned()),
                whatsapp: default_whatsapp,
                channels: crate::channels::TenantChannels::load(
                    "default",
                    var("TWILIO_FROM_NUMBER").or(default_file.twilio_from_number),
                    var("WAHA_SESSION").or(default_file.waha_session),
                    var("EMAIL_FROM").or(default_file.email_from),
                )?,
                consent: tenant_consent("default", default_file.consent, &global_consent)?,
                handoff: tenant_handoff("default", default_file.handoff, &global_handoff)?,
                guardrails: default_file
                    .guardrails
                    .unwrap_or_else(|| global_guardrails.clone()),
                scheduling: default_file
                    .scheduling
                    .unwrap_or_else(|| global_scheduling.clone()),
                templates: default_file.templates,
            },
        );
        for (raw_id, tenant) in file_tenants {
            let id = TenantId::parse(&raw_id)
                .map_err(|e| ConfigError::new(format!("[tenants.{raw_id}] in parley.toml: {e}")))?;
            let whatsapp = tenant_whatsapp(
                &raw_id,
                tenant.whatsapp_phone_number_id,
                tenant.whatsapp_access_token,
                &format!("tenants.{raw_id}.whatsapp_phone_number_id"),
                &format!("tenants.{raw_id}.whatsapp_access_token"),
            )?;
            let name = tenant.name.unwrap_or_else(|| raw_id.clone());
            let channels = crate::channels::TenantChannels::load(
                &raw_id,
                tenant.twilio_from_number,
                tenant.waha_session,
                tenant.email_from,
            )?;
            let consent = tenant_consent(&raw_id, tenant.consent, &global_consent)?;
            let handoff = tenant_handoff(&raw_id, tenant.handoff, &global_handoff)?;
            tenants.insert(
                id.clone(),
                TenantConfig {
                    id,
                    name,
                    whatsapp,
                    channels,
                    consent,
                    handoff,
                    guardrails: tenant
                        .guardrails
                        .unwrap_or_else(|| global_guardrails.clone()),
                    scheduling: tenant
                        .scheduling
                        .unwrap_or_else(|| global_scheduling.clone()),
                    templates: tenant.templates,
                },
            );
        }
        let mut seen_numbers = BTreeMap::new();
        for tenant in tenants.values() {
            if let Some(wa) = &tenant.whatsapp {
                if let Some(other) = seen_numbers.insert(wa.phone_number_id.clone(), &tenant.id) {
                    return Err(ConfigError::new(format!(
                        "WhatsApp phone_number_id {} is configured for both tenant `{other}` and tenant `{}`; each number belongs to one tenant",
                        wa.phone_number_id, tenant.id
                    )));
                }
            }
        }
        if tenants.values().any(|t| t.whatsapp.is_some()) && whatsapp.app_secret.is_none() {
            return Err(ConfigError::new(
                "WHATSAPP_APP_SECRET is required when a WhatsApp number is configured: without it webhooks cannot be verified",
            ));
        }

        let database_url = secret("DATABASE_URL").or(file.database_url);
        if let Some(url) = &database_url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::new(
                    "DATABASE_URL must be a postgres:// URL (leave it unset for the embedded SQLite store)",
                ));
            }
        }
        let redis_url = secret("REDIS_URL").or(file.redis_url);
        if let Some(url) = &redis_url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "REDIS_URL must be a redis:// or rediss:// URL (leave it unset for the in-process backends)",
                ));
            }
        }

        let leads =
            crate::leads::LeadsConfig::resolve(file.leads, &var).map_err(ConfigError::new)?;
        let crm = crate::crm::CrmConfig::resolve(file.crm, &var).map_err(ConfigError::new)?;
        let knowledge = crate::knowledge::KnowledgeSettings::from_sources(&var, file.knowledge)
            .map_err(ConfigError::new)?;

        Ok(Config {
            listen,
            data_dir: var("PARLEY_DATA_DIR")
                .or(file.data_dir)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./data")),
            prompts_dir: var("PARLEY_PROMPTS_DIR")
                .or(file.prompts_dir)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("prompts")),
            knowledge_dir: var("PARLEY_KNOWLEDGE_DIR")
                .or(file.knowledge_dir)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("knowledge")),
            admin_token: secret("PARLEY_ADMIN_TOKEN").or(file.admin_token),
            database_url,
            redis_url,
            redis_prefix: var("PARLEY_REDIS_PREFIX")
                .or(file.redis_prefix)
                .unwrap_or_else(|| "parley".to_owned()),
            log_format,
            pipeline,
            llm,
            whatsapp,
            public_url,
            twilio,
            waha,
            email,
            tenants,
            consent_key: secret("PARLEY_CONSENT_KEY").or(file.consent_key),
            leads,
            crm,
            knowledge,
            trusted_proxies,
        })
    }

    /// The tenant that owns a WhatsApp phone number id.
    pub fn tenant_for_whatsapp_number(&self, phone_number_id: &str) -> Option<&TenantConfig> {
        self.tenants.values().find(|t| {
            t.whatsapp
                .as_ref()
                .is_some_and(|w| w.phone_number_id == phone_number_id)
        })
    }

    pub fn tenant(&self, id: &TenantId) -> Option<&TenantConfig> {
        self.tenants.get(id)
    }
}

/// A tenant's consent policy: its own section, else the global one; checked either way.
fn tenant_consent(
    tenant: &str,
    own: Option<ConsentSettings>,
    global: &ConsentSettings,
) -> Result<ConsentSettings, ConfigError> {
    match own {
        Some(settings) => {
            settings
                .validate(&format!("tenants.{tenant}.consent"))
                .map_err(ConfigError::new)?;
            Ok(settings)
        }
        None => Ok(global.clone()),
    }
}

/// A tenant's handoff policy: its own section, else the global one.
fn tenant_handoff(
    tenant: &str,
    own: Option<HandoffSettings>,
    global: &HandoffSettings,
) -> Result<HandoffSettings, ConfigError> {
    match own {
        Some(settings) => {
            settings
                .validate(&format!("tenants.{tenant}.handoff"))
                .map_err(ConfigError::new)?;
            Ok(settings)
        }
        None => Ok(global.clone()),
    }
}

fn tenant_whatsapp(
    tenant: &str,
    phone_number_id: Option<String>,
    access_token: Option<SecretString>,
    number_setting: &str,
    token_setting: &str,
) -> Result<Option<TenantWhatsApp>, ConfigError> {
    match (phone_number_id, access_token) {
        (None, None) => Ok(None),
        (Some(phone_number_id), Some(access_token)) => {
            if phone_number_id.is_empty() || !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new(format!(
                    "{number_setting} for tenant `{tenant}` must be the numeric phone number id from Meta's WhatsApp Manager"
                )));
            }
            Ok(Some(TenantWhatsApp {
                phone_number_id,
                access_token,
            }))
        }
        (Some(_), None) => Err(ConfigError::new(format!(
            "{token_setting} is missing for tenant `{tenant}`, which has a WhatsApp phone number id"
        ))),
        (None, Some(_)) => Err(ConfigError::new(format!(
            "{number_setting} is missing for tenant `{tenant}`, which has a WhatsApp access token"
        ))),
    }
}

fn parse_number<T: std::str::FromStr + Copy>(
    setting: &str,
    from_env: Option<String>,
    from_file: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match from_env {
        Some(raw) => raw.trim().parse().map_err(|_| {
            ConfigError::new(format!(
                "{setting} `{raw}` is not a valid non-negative number"
            ))
        }),
        None => Ok(from_file.unwrap_or(default)),
    }
}

pub(crate) fn check_http_url(setting: &str, raw: &str) -> Result<(), ConfigError> {
    match url::Url::parse(raw) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(ConfigError::new(format!(
            "{setting} `{raw}` is not an http(s) URL"
        ))),
    }
}

/// The shape of `parley.toml`. Unknown keys are errors, so a typo is caught at start-up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<String>,
    prompts_dir: Option<String>,
    knowledge_dir: Option<String>,
    admin_token: Option<SecretString>,
    database_url: Option<SecretString>,
    redis_url: Option<SecretString>,
    redis_prefix: Option<String>,
    log_format: Option<String>,
    pipeline: Option<PipelineFile>,
    llm: Option<LlmFile>,
    whatsapp: Option<WhatsAppFile>,
    public_url: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    twilio: Option<crate::channels::twilio::TwilioFile>,
    waha: Option<crate::channels::waha::WahaFile>,
    email: Option<crate::channels::email::EmailFile>,
    consent: Option<ConsentSettings>,
    consent_key: Option<SecretString>,
    handoff: Option<HandoffSettings>,
    guardrails: Option<GuardrailSettings>,
    scheduling: Option<SchedulingSettings>,
    knowledge: Option<crate::knowledge::KnowledgeFile>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantFile>,
    leads: Option<crate::leads::LeadsConfig>,
    crm: Option<crate::crm::CrmFile>,
}

impl FileConfig {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!(
                "PARLEY_CONFIG: cannot read {}: {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text).map_err(|e| {
            let message = e.message().trim_end_matches('.').to_owned();
            ConfigError::new(format!("{} is not valid: {message}", path.display()))
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    workers: Option<usize>,
    senders: Option<usize>,
    max_body_bytes: Option<usize>,
    max_send_attempts: Option<u32>,
    send_lease_ms: Option<u64>,
    recovery_interval_ms: Option<u64>,
    handoff_check_interval_ms: Option<u64>,
    memory_window: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmFile {
    api_key: Option<SecretString>,
    base_url: Option<String>,
    chat_model: Option<String>,
    embedding_model: Option<String>,
    timeout_ms: Option<u64>,
    cooldown_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatsAppFile {
    verify_token: Option<SecretString>,
    app_secret: Option<SecretString>,
    api_base: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    name: Option<String>,
    whatsapp_phone_number_id: Option<String>,
    whatsapp_access_token: Option<SecretString>,
    twilio_from_number: Option<String>,
    waha_session: Option<String>,
    email_from: Option<String>,
    consent: Option<ConsentSettings>,
    handoff: Option<HandoffSettings>,
    guardrails: Option<GuardrailSettings>,
    scheduling: Option<SchedulingSettings>,
    #[serde(default)]
    templates: BTreeMap<String, TemplateSettings>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_settings_at_all() {
        let config = Config::merge(FileConfig::default(), &env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.database_url.is_none());
        assert!(config.tenants.contains_key(&TenantId::default_tenant()));
        assert_eq!(config.whatsapp.api_base, DEFAULT_WHATSAPP_API_BASE);
    }

    #[test]
    fn environment_overrides_the_file() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            [pipeline]
            workers = 3
            "#,
        )
        .unwrap();
        let config = Config::merge(file, &env(&[("PARLEY_LISTEN", "127.0.0.1:7000")])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(config.pipeline.workers, 3);
    }

    #[test]
    fn a_malformed_setting_is_named_in_one_sentence() {
        let err = Config::merge(FileConfig::default(), &env(&[("PARLEY_LISTEN", "nope")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("PARLEY_LISTEN `nope` is not a socket address"),
            "{err}"
        );
        let err = Config::merge(FileConfig::default(), &env(&[("PARLEY_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PARLEY_WORKERS"), "{err}");
    }

    #[test]
    fn a_whatsapp_number_without_its_token_is_refused() {
        let err = Config::merge(
            FileConfig::default(),
            &env(&[("WHATSAPP_PHONE_NUMBER_ID", "106540352242922")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("WHATSAPP_ACCESS_TOKEN"), "{err}");
    }

    #[test]
    fn a_whatsapp_number_requires_the_app_secret() {
        let err = Config::merge(
            FileConfig::default(),
            &env(&[
                ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922"),
                ("WHATSAPP_ACCESS_TOKEN", "token"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("WHATSAPP_APP_SECRET"), "{err}");
    }

    #[test]
    fn phone_number_ids_select_their_tenant() {
        let file: FileConfig = toml::from_str(
            r#"
            [tenants.acme]
            name = "Acme Homes"
            whatsapp_phone_number_id = "222"
            whatsapp_access_token = "t2"
            "#,
        )
        .unwrap();
        let config = Config::merge(
            file,
            &env(&[
                ("WHATSAPP_PHONE_NUMBER_ID", "111"),
                ("WHATSAPP_ACCESS_TOKEN", "t1"),
                ("WHATSAPP_APP_SECRET", "s"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config
                .tenant_for_whatsapp_number("222")
                .unwrap()
                .id
                .as_str(),
            "acme"
        );
        assert_eq!(
            config
                .tenant_for_whatsapp_number("111")
                .unwrap()
                .id
                .as_str(),
            "default"
        );
        assert!(config.tenant_for_whatsapp_number("333").is_none());
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let err = toml::from_str::<FileConfig>("lisen = \"x\"").unwrap_err();
        assert!(err.message().contains("lisen"), "{}", err.message());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = Config::merge(
            FileConfig::default(),
            &env(&[
                ("PARLEY_ADMIN_TOKEN", "very-secret-admin-token"),
                ("DATABASE_URL", "postgres://u:hunter2@db/parley"),
            ]),
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret-admin-token"));
        assert!(!debug.contains("hunter2"));
    }
}
