//! Builds the application: the backends chosen by configuration (SQLite or PostgreSQL,
//! in-process or Redis), the intent detector and replies, the HTTP router and the background
//! tasks. `App::build` binds nothing itself: it takes a listener, so tests bind port 0.
//!
//! Shutdown (SIGTERM, Ctrl-C or the token): the server stops accepting and finishes the requests
//! in flight (each is answered only after its messages are recorded), workers finish the
//! conversation they hold, the sender delivers what is already due, the pool closes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::agents::ReplyBook;
use crate::broadcast::LiveEvents;
use crate::channels::whatsapp::{WhatsAppClient, WhatsAppCredentials};
use crate::config::Config;
use crate::consent::Consent;
use crate::domain::{Clock, SystemClock, TenantId};
use crate::llm::{IntentCatalog, IntentClassifier, IntentDetector, LlmClient, LlmSettings};
use crate::memory::{Memory, MemorySettings};
use crate::metrics::Metrics;
use crate::pipeline::{self, Completer, Recorder};
use crate::queue::{QueueSettings, WorkQueue};
use crate::store::Store;

/// Everything handlers and background tasks share.
#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    /// Consent policies, the ledger and the outbound gate.
    pub consent: Consent,
    pub queue: WorkQueue,
    pub memory: Memory,
    pub live: LiveEvents,
    pub intents: IntentDetector,
    pub replies: ReplyBook,
    /// The OpenAI-compatible model, when `OPENAI_API_KEY` is set.
    pub llm: Option<LlmClient>,
    /// The specialist agents from `prompts/agents/`.
    pub agents: crate::agents::AgentRegistry,
    /// The system prompt of the rolling summary (`prompts/summary.md`).
    pub summary_prompt: String,
    pub whatsapp: WhatsAppClient,
    pub twilio: crate::channels::twilio::TwilioClient,
    pub waha: crate::channels::waha::WahaClient,
    /// The SMTP sender for email replies (`SMTP_URL`), if configured.
    pub smtp: Option<crate::channels::email::SmtpSender>,
    /// Signs and checks one-click unsubscribe links.
    pub unsubscribe: crate::channels::email::UnsubscribeKey,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Writes workers' completions, many in one commit.
    pub completer: Completer,
    /// Lead facts, scores and temperature.
    pub leads: crate::leads::Leads,
    /// The CRM outbox's delivery side.
    pub crm: crate::crm::Crm,
    /// The knowledge base (documents, chunks, vector index, search).
    pub knowledge: crate::knowledge::Knowledge,
    /// Wakes the sender when a worker has queued a reply.
    pub outbox_wakeup: Notify,
    /// The admin bearer token (from the environment, or generated into the data dir).
    pub admin_token: SecretString,
    /// Cancelled when the application stops (ends live streams so shutdown is not held open).
    pub shutdown: CancellationToken,
    /// Failed sign-ins per account and per address, for the login rate limit.
    pub login_throttle: crate::staff::LoginThrottle,
    /// WhatsApp credentials per tenant, built once.
    whatsapp_credentials: BTreeMap<TenantId, WhatsAppCredentials>,
}

impl AppState {
    /// The WhatsApp number a tenant sends from, if it has one.
    pub fn whatsapp_credentials(&self, tenant: &TenantId) -> Option<WhatsAppCredentials> {
        self.whatsapp_credentials.get(tenant).cloned()
    }
}

/// Options tests use to control the application.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub clock: Arc<dyn Clock>,
    /// Start workers, sender and recovery (tests of the ack path, or of crash recovery, turn
    /// them off).
    pub background_tasks: bool,
    /// PostgreSQL schema to work in (tests run in parallel, one schema each).
    pub postgres_schema: Option<String>,
    /// MX lookups for lead emails; `None`: the system resolver (or none with
    /// `leads.mx_check = false`).
    pub mx_resolver: Option<crate::leads::MxResolver>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            background_tasks: true,
            postgres_schema: None,
            mx_resolver: None,
        }
    }
}

/// A built application, ready to run on its listener.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
    /// The recorder and the completer, stopped last (aborted if the application is dropped).
    recorder: JoinSet<()>,
    /// Workers, sender and recovery (aborted if the application is dropped).
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    background_tasks: bool,
}

impl App {
    /// Builds with the wall clock and every background task.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        Self::build_with(config, listener, BuildOptions::default()).await
    }

    pub async fn build_with(
        config: Config,
        listener: TcpListener,
        options: BuildOptions,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "PARLEY_DATA_DIR: cannot create {}",
                config.data_dir.display()
            )
        })?;
        let store = Store::open_configured(&config, options.postgres_schema.as_deref()).await?;
        let knowledge = crate::knowledge::Knowledge::open(store.clone(), &config).await?;
        if config.knowledge.autoload {
            let default_tenant = TenantId::default_tenant();
            match knowledge
                .load_folder_at_first_start(&default_tenant, &config.knowledge_dir)
                .await
            {
                // The demo documents are small: the first prospect should find them loaded.
                Ok(Some(job)) => {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    while tokio::time::Instant::now() < deadline {
                        match knowledge.job(&default_tenant, job).await {
                            Ok(record)
                                if record.status == "running" || record.status == "pending" =>
                            {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            _ => break,
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "could not load the knowledge folder"),
            }
        }
        let memory_settings = MemorySettings {
            window: config.pipeline.memory_window,
            ..MemorySettings::default()
        };
        let (queue, memory, live) = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.expose_secret())
                    .context("REDIS_URL is not a valid Redis URL")?;
                let connection = redis::aio::ConnectionManager::new(client.clone())
                    .await
                    .context("REDIS_URL: cannot connect to Redis")?;
                let consumer = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
                let queue = WorkQueue::redis(
                    connection.clone(),
                    &config.redis_prefix,
                    &consumer,
                    QueueSettings::default(),
                )
                .await
                .context("REDIS_URL: cannot set up the work queue")?;
                let memory = Memory::redis(connection, &config.redis_prefix, memory_settings);
                let live = LiveEvents::redis(client, &config.redis_prefix)
                    .await
                    .context("REDIS_URL: cannot subscribe to live events")?;
                (queue, memory, live)
            }
            None => (
                WorkQueue::in_process(),
                Memory::in_process(memory_settings),
                LiveEvents::in_process(),
            ),
        };

        let catalog = IntentCatalog::load(&config.prompts_dir.join("intents.toml"))?;
        let started = std::time::Instant::now();
        let classifier = IntentClassifier::train(&catalog);
        tracing::info!(
            duration_ms = started.elapsed().as_millis() as u64,
            "offline intent classifier trained"
        );
        let llm = config.llm.api_key.as_ref().map(|key| {
            LlmClient::new(LlmSettings {
                api_key: key.clone(),
                base_url: config.llm.base_url.clone(),
                chat_model: config.llm.chat_model.clone(),
                timeout: config.llm.timeout,
            })
            .with_cooldown(config.llm.cooldown)
        });
        let intents = IntentDetector::new(classifier, &catalog, llm.clone());
        let agents = crate::agents::AgentRegistry::load(&config.prompts_dir.join("agents"))
            .context("an agent file is not valid")?;
        let summary_prompt = crate::agents::summary::load_prompt(&config.prompts_dir)?;
        let replies = ReplyBook::load(
            &config.prompts_dir.join("replies.toml"),
            catalog.names().chain(["media"]),
        )?;

        let whatsapp = WhatsAppClient::new(&config.whatsapp.api_base);
        let whatsapp_credentials = config
            .tenants
            .values()
            .filter_map(|t| {
                t.whatsapp.as_ref().map(|w| {
                    (
                        t.id.clone(),
                        WhatsAppCredentials {
                            phone_number_id: w.phone_number_id.clone(),
                            access_token: w.access_token.clone(),
                        },
                    )
                })
            })
            .collect();
        let admin_token = match &config.admin_token {
            Some(token) => token.clone(),
            None => generated_admin_token(&config.data_dir)?,
        };

        let consent = Consent::open(store.clone(), &config)
            .await
            .context("could not prepare the consent ledger")?;

        let metrics = Metrics::new();
        let mut recorder_task = JoinSet::new();
        let (recorder, task) = Recorder::new(
            store.clone(),
            queue.clone(),
            metrics.clone(),
            options.clock.clone(),
        );
        recorder_task.spawn(task);
        let (completer, task) = Completer::new(store.clone());
        recorder_task.spawn(task);

        tracing::info!(
            store = store.backend_name(),
            redis = config.redis_url.is_some(),
            llm = config.llm.api_key.is_some(),
            tenants = config.tenants.len(),
            "Parley built"
        );
        let crm = crate::crm::Crm::new(store.clone(), options.clock.clone(), config.crm.clone());
        let mx = options.mx_resolver.unwrap_or_else(|| {
            if config.leads.mx_check {
                crate::leads::MxResolver::system(Duration::from_millis(config.leads.mx_timeout_ms))
            } else {
                crate::leads::MxResolver::Off
            }
        });
        let leads = crate::leads::Leads {
            store: store.clone(),
            clock: options.clock.clone(),
            config: Arc::new(config.leads.clone()),
            crm: crm.clone(),
            mx,
            llm: llm.clone(),
            recent: crate::leads::RecentLeads::default(),
        };
        let twilio = crate::channels::twilio::TwilioClient::new(&config.twilio.api_base);
        let smtp = config
            .email
            .smtp_url
            .as_ref()
            .map(crate::channels::email::SmtpSender::new)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let unsubscribe = crate::channels::email::UnsubscribeKey::new(
            config.email.unsubscribe_secret.as_ref(),
            &admin_token,
        );
        let shutdown = CancellationToken::new();
        let state = Arc::new(AppState {
            config,
            clock: options.clock,
            store,
            consent,
            queue,
            memory,
            live,
            intents,
            replies,
            agents,
            summary_prompt,
            llm: llm.clone(),
            whatsapp,
            twilio,
            smtp,
            unsubscribe,
            waha: crate::channels::waha::WahaClient::new(),
            metrics,
            recorder,
            completer,
            leads,
            crm,
            knowledge,
            outbox_wakeup: Notify::new(),
            admin_token,
            shutdown: shutdown.clone(),
            login_throttle: crate::staff::LoginThrottle::default(),
            whatsapp_credentials,
        });
        Ok(Self {
            state,
            listener,
            recorder: recorder_task,
            tasks: JoinSet::new(),
            shutdown,
            background_tasks: options.background_tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Cancelling this token stops the application gracefully, like SIGTERM.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM, Ctrl-C or the shutdown token, then drains. Dropping this future
    /// instead aborts everything at once (what a crash looks like to the data).
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let work = CancellationToken::new();
        if self.background_tasks {
            for _ in 0..self.state.config.pipeline.workers {
                self.tasks
                    .spawn(pipeline::worker::run(self.state.clone(), work.clone()));
            }
            self.tasks.spawn(pipeline::sender::run(
                self.state.clone(),
                work.clone(),
                Duration::from_secs(10),
            ));
            self.tasks
                .spawn(pipeline::recovery::run(self.state.clone(), work.clone()));
            self.tasks.spawn(pipeline::recovery::maintain_statistics(
                self.state.clone(),
                work.clone(),
            ));
            self.tasks.spawn(crate::agents::handoff::run_escalations(
                self.state.clone(),
                work.clone(),
                self.state.config.pipeline.handoff_check_interval,
            ));
            self.tasks
                .spawn(crate::crm::worker::run(self.state.clone(), work.clone()));
        }
        let shutdown = self.shutdown.clone();
        tokio::spawn(watch_signals(shutdown.clone()));
        let router = crate::http::router(self.state.clone());
        tracing::info!(port = self.port(), "listening");
        // The peer address reaches handlers (the login rate limit counts per address).
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the HTTP server failed")?;
        tracing::info!("stopped accepting requests; draining");
        work.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(err) = result {
                if err.is_panic() {
                    tracing::error!("a background task panicked during shutdown");
                }
            }
        }
        // Every request has been answered and every worker has stopped, so nothing is waiting
        // on the recorder or the completer.
        self.recorder.abort_all();
        let state = self.state;
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn watch_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

/// Without `PARLEY_ADMIN_TOKEN`, a random token is generated once into the data dir (readable by
/// the owner only) so the API is usable without leaving it open.
fn generated_admin_token(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(SecretString::from(token));
        }
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::write(&path, &token)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::info!(path = %path.display(), "PARLEY_ADMIN_TOKEN is not set; generated one into this file");
    Ok(SecretString::from(token))
}
