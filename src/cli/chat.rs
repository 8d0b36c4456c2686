//! `parley chat`: talk to a running Parley server as a website visitor, through the web channel.
//!
//! Each line read from standard input is POSTed to `/api/v1/web/messages`; the bot's and staff's
//! answers are printed as they arrive on the conversation's server-sent-event stream
//! (`/api/v1/conversations/{id}/events`), which is followed in the background, reconnected with
//! backoff when it drops, and caught up from `/messages` after each (re)connection. Messages are
//! shown once, by id, however many times they come.
//!
//! The visitor id is what ties a visitor to their conversation, so it is kept in a file (see
//! [`visitor_id_file`]) and a restarted `parley chat` continues where it left off, showing the
//! conversation so far.
//!
//! At a terminal it is an interactive prompt. With piped input (`echo hi | parley chat`) it sends
//! each line, waits for the answer (up to `--reply-timeout`), and exits at the end of input.

use crate::domain::{Channel, ConversationId, TenantId};
use anyhow::{Context as _, bail};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use rand::Rng;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The file, in the data directory, that keeps the visitor id between runs.
const VISITOR_ID_FILE: &str = "chat-visitor-id";

/// How many earlier messages are shown when a conversation is resumed.
const HISTORY_SHOWN: usize = 20;

/// After a reply in piped mode, how long to keep listening for a second message that belongs to
/// the same answer (a handoff notice, a follow-up question).
const SETTLE: Duration = Duration::from_millis(750);

/// A live-update stream with no bytes at all (not even keep-alive comments) for this long is
/// taken as dead and reopened.
const STREAM_IDLE: Duration = Duration::from_secs(90);

/// Talk to a running Parley server as a website visitor.
///
/// Type a message and press Enter; answers appear as they arrive. Ctrl-D quits. With piped input
/// (`echo "hi" | parley chat`) each line is sent in turn, its reply awaited, and the command exits
/// at the end of the input.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Base URL of the running Parley server.
    #[arg(long, env = "PARLEY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: reqwest::Url,

    /// Tenant (business) to talk to, as configured in parley.toml.
    #[arg(long, default_value = "default", value_parser = TenantId::parse)]
    pub tenant: TenantId,

    /// Visitor id to talk as. Default: a random id created on first use and kept in
    /// $PARLEY_DATA_DIR/chat-visitor-id if PARLEY_DATA_DIR is set, else in the user's data
    /// directory (on Linux $XDG_DATA_HOME/parley/chat-visitor-id, usually
    /// ~/.local/share/parley/chat-visitor-id), so a restarted chat continues the same
    /// conversation.
    #[arg(long)]
    pub visitor_id: Option<String>,

    /// Start over: make a new visitor id (replacing the kept one) and so a new conversation.
    #[arg(long, conflicts_with = "visitor_id")]
    pub new: bool,

    /// Bearer token for the API (PARLEY_ADMIN_TOKEN). Not needed for the web channel. Never
    /// printed.
    #[arg(long, env = "PARLEY_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub token: Option<SecretString>,

    /// With piped input, how long to wait for the answer to each line (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = crate::cli::bench::parse_duration)]
    pub reply_timeout: Duration,
}

fn parse_secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

/// Runs the chat until the end of standard input.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let (visitor_id, kept_in) = resolve_visitor_id(&args)?;
    let api = Api::new(&args, visitor_id.clone())?;
    let kept = match &kept_in {
        Some(path) => format!("kept in {}", path.display()),
        None => "given on the command line".to_owned(),
    };
    eprintln!(
        "Parley chat with {} (tenant {}), as visitor {visitor_id} ({kept}).",
        api.base, args.tenant
    );
    if interactive {
        eprintln!("Type a message and press Enter; Ctrl-D quits.");
    }
    let session = Session::new(
        api,
        Box::new(std::io::stdout()),
        interactive,
        args.reply_timeout,
    );
    session.run(read_stdin_lines()).await
}

/// Standard input, line by line, read on a thread of its own: a blocking read must not keep the
/// runtime from shutting down when the chat ends for another reason.
fn read_stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The visitor id to talk as, and the file it is kept in (none when given on the command line).
fn resolve_visitor_id(args: &ChatArgs) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(id) = &args.visitor_id {
        let id = id.trim();
        if id.is_empty() {
            bail!("--visitor-id must not be empty");
        }
        return Ok((id.to_owned(), None));
    }
    let Some(path) = visitor_id_file(
        std::env::var_os("PARLEY_DATA_DIR"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::home_dir(),
    ) else {
        let id = new_visitor_id();
        eprintln!("note: no data directory to keep the visitor id in; this chat starts afresh");
        return Ok((id, None));
    };
    let id = load_or_create_visitor_id(&path, args.new)
        .with_context(|| format!("keeping the visitor id in {}", path.display()))?;
    Ok((id, Some(path)))
}

/// Where the visitor id is kept: `$PARLEY_DATA_DIR/chat-visitor-id` when that is set, else
/// `parley/chat-visitor-id` in the user's data directory (`$XDG_DATA_HOME`, or
/// `~/.local/share`; `~/Library/Application Support` on macOS).
pub fn visitor_id_file(
    parley_data_dir: Option<std::ffi::OsString>,
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(dir) = parley_data_dir.filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join(VISITOR_ID_FILE));
    }
    let user_data = if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library/Application Support"))
    } else {
        xdg_data_home
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| home.map(|h| h.join(".local/share")))
    }?;
    Some(user_data.join("parley").join(VISITOR_ID_FILE))
}

/// Reads the visitor id kept at `path`, or makes one and keeps it there (also when `fresh`).
fn load_or_create_visitor_id(path: &Path, fresh: bool) -> std::io::Result<String> {
    if !fresh && let Ok(kept) = std::fs::read_to_string(path) {
        let kept = kept.trim();
        if is_plausible_visitor_id(kept) {
            return Ok(kept.to_owned());
        }
    }
    let id = new_visitor_id();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{id}\n"))?;
    Ok(id)
}

fn is_plausible_visitor_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_whitespace)
}

fn new_visitor_id() -> String {
    format!("cli-{}", uuid::Uuid::new_v4().simple())
}

/// A message as the API shows it. Fields are lenient: a newer server may add authors or leave
/// text out of a status update.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WireMessage {
    pub id: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageList {
    messages: Vec<WireMessage>,
}

#[derive(Debug, Deserialize)]
struct Posted {
    conversation_id: String,
    #[serde(default)]
    message_id: Option<String>,
}

/// The error body every Parley endpoint uses.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    #[serde(default)]
    request_id: Option<String>,
}

/// What can go wrong talking to the server, each as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("could not reach Parley at {url}: is `parley serve` running?")]
    Unreachable { url: String },
    #[error("Parley at {url} did not answer in time")]
    Timeout { url: String },
    #[error("Parley answered {status} ({code}): {message}{}", request_id.as_deref().map(|id| format!(" [request id {id}]")).unwrap_or_default())]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("Parley answered {status} with a body this client does not understand")]
    Unexpected { status: StatusCode },
    #[error("talking to Parley failed: {0}")]
    Http(String),
}

/// The web-channel API, as one visitor.
#[derive(Debug, Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    tenant: TenantId,
    visitor_id: String,
    token: Option<SecretString>,
}

impl Api {
    fn new(args: &ChatArgs, visitor_id: String) -> anyhow::Result<Self> {
        let base = args.url.as_str().trim_end_matches('/').to_owned();
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if is_loopback(&args.url) {
            // A proxy set for the outside world must not swallow a local server.
            http = http.no_proxy();
        }
        Ok(Self {
            http: http.build().context("building the HTTP client")?,
            base,
            tenant: args.tenant.clone(),
            visitor_id,
            token: args.token.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    fn transport(&self, e: reqwest::Error) -> ChatError {
        if e.is_connect() {
            ChatError::Unreachable {
                url: self.base.clone(),
            }
        } else if e.is_timeout() {
            ChatError::Timeout {
                url: self.base.clone(),
            }
        } else {
            ChatError::Http(e.without_url().to_string())
        }
    }

    async fn send(&self, text: &str) -> Result<Posted, ChatError> {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/web/messages")
            .timeout(Duration::from_secs(15))
            .json(&serde_json::json!({
                "tenant": self.tenant.as_str(),
                "visitor_id": self.visitor_id,
                "text": text,
            }))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        decode(response).await
    }

    /// The conversation's messages, or `None` if there is no such conversation (yet).
    async fn history(&self, id: ConversationId) -> Result<Option<Vec<WireMessage>>, ChatError> {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/conversations/{id}/messages"),
            )
            .query(&[("visitor_id", &self.visitor_id)])
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let list: MessageList = decode(response).await?;
        Ok(Some(list.messages))
    }

    async fn events(
        &self,
        id: ConversationId,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ChatError> {
        let mut request = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/conversations/{id}/events"),
            )
            .query(&[("visitor_id", &self.visitor_id)])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(api_error(response).await)
        }
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ChatError> {
    let status = response.status();
    if !status.is_success() {
        return Err(api_error(response).await);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| ChatError::Http(e.without_url().to_string()))?;
    serde_json::from_slice(&body).map_err(|_| ChatError::Unexpected { status })
}

async fn api_error(response: reqwest::Response) -> ChatError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => ChatError::Api {
            status,
            code: e.error,
            message: e.message,
            request_id: e.request_id,
        },
        Err(_) => ChatError::Unexpected { status },
    }
}

/// Exponential backoff with jitter, for reopening the live-update stream.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            current: first,
        }
    }

    /// The next wait: doubling from `first` up to `max`, each within ±20 %.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        base.mul_f64(rand::rng().random_range(0.8..=1.2))
    }

    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

/// What the chat prints, and what it has already printed.
struct Transcript {
    out: Box<dyn Write + Send>,
    interactive: bool,
    seen: HashSet<String>,
    /// Bot and staff messages shown since the chat started.
    replies: u64,
}

impl Transcript {
    fn new(out: Box<dyn Write + Send>, interactive: bool) -> Self {
        Self {
            out,
            interactive,
            seen: HashSet::new(),
            replies: 0,
        }
    }

    fn prompt(&mut self) {
        if self.interactive {
            let _ = write!(self.out, "you> ");
            let _ = self.out.flush();
        }
    }

    /// The conversation so far, when the chat starts.
    fn history(&mut self, messages: Vec<WireMessage>) {
        let shown = messages.len().saturating_sub(HISTORY_SHOWN);
        if messages.is_empty() {
            return;
        }
        let _ = writeln!(self.out, "--- earlier in this conversation ---");
        if shown > 0 {
            let _ = writeln!(self.out, "({shown} older messages not shown)");
        }
        for (i, message) in messages.into_iter().enumerate() {
            let text = message.text.as_deref().unwrap_or_default();
            if i >= shown && !text.is_empty() {
                let _ = write!(self.out, "{}", render(&message.author, text));
            }
            self.seen.insert(message.id);
        }
        let _ = writeln!(self.out, "---");
        let _ = self.out.flush();
    }

    /// A line this chat sent, echoed when input is piped (a terminal already shows it).
    fn sent(&mut self, text: &str) {
        if !self.interactive {
            let _ = write!(self.out, "{}", render("prospect", text));
            let _ = self.out.flush();
        }
    }

    /// A message from the live stream or a catch-up: shown if it is a new bot or staff message.
    fn live(&mut self, message: WireMessage) {
        let Some(text) = message.text.as_deref().filter(|t| !t.is_empty()) else {
            // A status update without text; it may come back with text, so it is not "seen".
            return;
        };
        if message.author == "prospect" || message.direction == "inbound" {
            // The visitor's own words: typed here, or shown in the history.
            self.seen.insert(message.id);
            return;
        }
        if !self.seen.insert(message.id.clone()) {
            return;
        }
        if self.interactive {
            // Clear the pending prompt, print, and put the prompt back.
            let _ = write!(self.out, "\r\x1b[2K");
        }
        let _ = write!(self.out, "{}", render(&message.author, text));
        self.replies += 1;
        self.prompt();
        let _ = self.out.flush();
    }
}

/// `bot> text`, continuation lines indented under the text.
fn render(author: &str, text: &str) -> String {
    let label = match author {
        "prospect" => "you",
        "" => "?",
        other => other,
    };
    let indent = " ".repeat(label.len() + 2);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(&format!("{label}> {line}\n"));
        } else {
            out.push_str(&format!("{indent}{line}\n"));
        }
    }
    if out.is_empty() {
        out.push_str(&format!("{label}>\n"));
    }
    out
}

/// One chat: the transcript, the conversation being followed, and messages from the follower.
struct Session {
    api: Api,
    transcript: Transcript,
    interactive: bool,
    reply_timeout: Duration,
    conversation: watch::Sender<Option<ConversationId>>,
    incoming: mpsc::Receiver<WireMessage>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Session {
    fn new(
        api: Api,
        out: Box<dyn Write + Send>,
        interactive: bool,
        reply_timeout: Duration,
    ) -> Self {
        let (conversation, watching) = watch::channel(None);
        let (tx, incoming) = mpsc::channel(64);
        let follower = tokio::spawn(follow_events(api.clone(), watching, tx));
        Self {
            api,
            transcript: Transcript::new(out, interactive),
            interactive,
            reply_timeout,
            conversation,
            incoming,
            follower,
        }
    }

    async fn run(
        mut self,
        mut lines: mpsc::Receiver<std::io::Result<String>>,
    ) -> anyhow::Result<()> {
        // A web conversation's id is derived from the visitor (domain::ids), so its history can be
        // shown before anything is sent. The server's answer to a POST has the final word.
        let guess = ConversationId::derive(&self.api.tenant, Channel::Web, &self.api.visitor_id);
        match self.api.history(guess).await {
            Ok(Some(messages)) => {
                self.transcript.history(messages);
                self.conversation.send_replace(Some(guess));
            }
            Ok(None) => {}
            Err(e @ ChatError::Unreachable { .. }) => return Err(e.into()),
            Err(e) => eprintln!("(could not load the conversation so far: {e})"),
        }

        let mut sent = 0u64;
        let mut unanswered = 0u64;
        self.transcript.prompt();
        loop {
            tokio::select! {
                line = lines.recv() => {
                    let line = match line {
                        None => break,
                        Some(line) => line.context("reading standard input")?,
                    };
                    let text = line.trim();
                    if text.is_empty() {
                        self.transcript.prompt();
                        continue;
                    }
                    self.transcript.sent(text);
                    let mark = self.transcript.replies;
                    if let Err(e) = self.send(text).await {
                        if !self.interactive {
                            return Err(e.into());
                        }
                        eprintln!("{e}");
                        self.transcript.prompt();
                        continue;
                    }
                    sent += 1;
                    if !self.interactive && !self.await_reply(mark).await {
                        unanswered += 1;
                        eprintln!("(no reply within {:?})", self.reply_timeout);
                    }
                }
                Some(message) = self.incoming.recv() => self.transcript.live(message),
            }
        }
        if self.interactive {
            let _ = writeln!(self.transcript.out);
        }
        if unanswered > 0 {
            bail!(
                "{unanswered} of {sent} messages got no reply within {:?}",
                self.reply_timeout
            );
        }
        Ok(())
    }

    async fn send(&mut self, text: &str) -> Result<(), ChatError> {
        let posted = self.api.send(text).await?;
        if let Some(id) = posted.message_id {
            self.transcript.seen.insert(id);
        }
        let id =
            ConversationId::parse(&posted.conversation_id).map_err(|_| ChatError::Unexpected {
                status: StatusCode::ACCEPTED,
            })?;
        self.conversation.send_if_modified(|current| {
            let changed = *current != Some(id);
            *current = Some(id);
            changed
        });
        Ok(())
    }

    /// Piped mode: waits for a reply beyond the `mark`-th, then briefly for any that follow it.
    async fn await_reply(&mut self, mark: u64) -> bool {
        let deadline = Instant::now() + self.reply_timeout;
        while self.transcript.replies <= mark {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(message)) => self.transcript.live(message),
                Ok(None) | Err(_) => return false,
            }
        }
        while let Ok(Some(message)) = tokio::time::timeout(SETTLE, self.incoming.recv()).await {
            self.transcript.live(message);
        }
        true
    }
}

/// Follows the live updates of whichever conversation `watching` names, forever: reopens the
/// stream with backoff when it drops, and after every (re)connection catches up from the message
/// list, so nothing sent while it was away is missed.
async fn follow_events(
    api: Api,
    mut watching: watch::Receiver<Option<ConversationId>>,
    tx: mpsc::Sender<WireMessage>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut last_event_id: Option<String> = None;
    let mut troubled = false;
    loop {
        let Ok(id) = watching.wait_for(Option::is_some).await.map(|id| *id) else {
            return;
        };
        let Some(id) = id else { continue };
        match api.events(id, last_event_id.as_deref()).await {
            Ok(response) => {
                if troubled {
                    eprintln!("(live updates back)");
                    troubled = false;
                }
                backoff.reset();
                if let Ok(Some(messages)) = api.history(id).await {
                    for message in messages {
                        if tx.send(message).await.is_err() {
                            return;
                        }
                    }
                }
                let bytes = tokio_stream::StreamExt::timeout(response.bytes_stream(), STREAM_IDLE)
                    .map(|item| match item {
                        Ok(Ok(bytes)) => Ok(bytes),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no data, not even a keep-alive".to_owned()),
                    });
                let mut events = std::pin::pin!(bytes.eventsource());
                let switched = loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(Ok(event)) => {
                                if !event.id.is_empty() {
                                    last_event_id = Some(event.id.clone());
                                }
                                if (event.event.is_empty() || event.event == "message")
                                    && let Ok(message) = serde_json::from_str::<WireMessage>(&event.data)
                                    && tx.send(message).await.is_err()
                                {
                                    return;
                                }
                            }
                            Some(Err(_)) | None => break false,
                        },
                        changed = watching.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            break true;
                        }
                    }
                };
                if switched {
                    last_event_id = None;
                    continue;
                }
                if !troubled {
                    eprintln!("(live updates interrupted; reconnecting)");
                    troubled = true;
                }
            }
            Err(e) => {
                if !troubled {
                    eprintln!("(live updates unavailable: {e}; retrying)");
                    troubled = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            changed = watching.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests;
