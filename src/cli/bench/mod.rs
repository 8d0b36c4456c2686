//! `parley bench`: a load generator for a running Parley server, over loopback.
//!
//! It POSTs distinct, correctly signed WhatsApp webhook deliveries to `/webhooks/whatsapp` (a fresh
//! `wamid` each, spread over `--conversations` simulated prospects) with `--concurrency` requests
//! in flight, each on its own keep-alive connection, and reports how fast the server acknowledges
//! them (a 2xx means the message is durably recorded, DESIGN.md section 1).
//!
//! With `--sink-listen` it also measures the whole way through: the bench serves a stand-in for
//! Meta's Graph API ([`sink`]) that the server under test sends its replies to, pairs each reply
//! with the message that caused it ([`tracker`]), and reports replies per second, end-to-end
//! latency, and replies missing or duplicated.
//!
//! The generator shares the machine with the server, so it keeps its own cost down and reports
//! it: in count-bounded runs every body is built and signed before the clock starts; each sender
//! keeps its own statistics; the CPU time the bench process used is printed next to the results.

mod envelope;
mod load;
mod sink;
mod stats;
mod tracker;

use anyhow::{Context, bail};
use envelope::{MAX_CONVERSATIONS, Signer, Workload};
use load::{Endpoint, Source, Target, run_phase};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use stats::{AckStats, LatencySummary, process_cpu_time};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracker::ReplyTracker;

pub use stats::parse_duration;

/// Count-bounded runs build every body before timing, up to this many (about 650 bytes each).
const PREPARE_AT_MOST: u64 = 1_000_000;

/// Load-test a running Parley server with signed WhatsApp webhooks.
///
/// Start the server first (`parley serve`), with the same WHATSAPP_APP_SECRET and
/// WHATSAPP_PHONE_NUMBER_ID as given here. For end-to-end figures, start it with
/// WHATSAPP_API_BASE=http://127.0.0.1:9999/v21.0 and pass `--sink-listen 127.0.0.1:9999`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the Parley server under test.
    #[arg(long, env = "PARLEY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: reqwest::Url,

    /// The WhatsApp app secret the server verifies webhook signatures with. Never printed.
    #[arg(long, env = "WHATSAPP_APP_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub app_secret: SecretString,

    /// The business phone number id put in each delivery's metadata; the server routes it to a
    /// tenant by this id.
    #[arg(long, env = "WHATSAPP_PHONE_NUMBER_ID")]
    pub phone_number_id: String,

    /// Requests in flight at once (one keep-alive connection each).
    #[arg(short = 'c', long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Webhooks to send in the measured phase; up to a million are built and signed before the
    /// clock starts. Ignored when --duration is given.
    #[arg(short = 'n', long, default_value_t = 5_000)]
    pub requests: u64,

    /// Send for this long instead of a fixed count (e.g. 30s, 2m). Bodies are then built and
    /// signed as they are sent, which the reported generator cost includes.
    #[arg(short = 'd', long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Distinct simulated prospects (WhatsApp numbers) the messages are spread over, round
    /// robin. Keep it at least --concurrency so replies pair exactly with their messages.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=MAX_CONVERSATIONS as i64))]
    pub conversations: u32,

    /// Webhooks sent before measuring, to open connections and warm the server up; their
    /// replies are awaited (with --sink-listen) and not counted.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,

    /// Text of every message.
    #[arg(long, default_value = "What is the price of a 2 BHK?")]
    pub text: String,

    /// Run the reply sink at this address and measure end to end. The server must be started
    /// with WHATSAPP_API_BASE=http://<this address>/v21.0.
    #[arg(long, value_name = "ADDR")]
    pub sink_listen: Option<SocketAddr>,

    /// How long to wait for outstanding replies after the last webhook was acknowledged.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Per-request timeout for webhook POSTs.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print the results as one JSON object on standard output (progress goes to standard error).
    #[arg(long)]
    pub json: bool,
}

fn parse_secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

/// Runs the benchmark described by `args` and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = execute(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// The figures of one run, as printed (text) or serialised (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: Config,
    /// Building and signing bodies before the timed phase (count-bounded runs only).
    pub preparation: Option<Preparation>,
    pub webhooks: WebhookFigures,
    /// Present with `--sink-listen`.
    pub replies: Option<ReplyFigures>,
    pub generator: GeneratorCost,
}

/// Everything needed to run the same benchmark again (the app secret excepted).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub url: String,
    pub phone_number_id: String,
    pub concurrency: u32,
    pub requests: Option<u64>,
    pub duration_secs: Option<f64>,
    pub conversations: u32,
    pub warmup: u64,
    pub text: String,
    pub sink_listen: Option<String>,
    pub drain_timeout_secs: f64,
    pub timeout_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preparation {
    pub bodies: u64,
    pub elapsed_secs: f64,
    pub per_body_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookFigures {
    pub sent: u64,
    pub acknowledged: u64,
    pub elapsed_secs: f64,
    pub acknowledged_per_sec: f64,
    /// HTTP status code to count.
    pub statuses: BTreeMap<String, u64>,
    /// Transport errors by kind (`connect`, `timeout`, `io`, `other`).
    pub errors: BTreeMap<String, u64>,
    /// Acknowledgement latency of 2xx answers.
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplyFigures {
    pub sink: String,
    /// Acknowledged measured webhooks, each owed one reply.
    pub expected: u64,
    pub received: u64,
    /// From the start of the measured phase to the last reply.
    pub elapsed_secs: f64,
    pub replies_per_sec: f64,
    /// Owed replies that had not arrived when the drain timeout ran out.
    pub missing: u64,
    /// Second replies to a message that already had one (identified by `context`).
    pub duplicates: u64,
    /// Replies nothing was waiting for: duplicates without `context`, or replies to strangers.
    pub unmatched: u64,
    pub mark_reads: u64,
    pub warmup_replies: u64,
    /// From sending the webhook to the reply's arrival at the sink.
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratorCost {
    /// CPU time (user + system) of the whole bench process during the measured sends, sink
    /// included; absent where the platform does not tell.
    pub cpu_secs: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    /// CPU time over wall time: how many cores the generator took from the server.
    pub cores: Option<f64>,
}

/// Runs the benchmark and returns its figures.
pub async fn execute(args: &BenchArgs) -> anyhow::Result<Report> {
    let concurrency = args.concurrency as usize;
    let base = args.url.as_str().trim_end_matches('/').to_owned();
    let webhook_url = reqwest::Url::parse(&format!("{base}/webhooks/whatsapp"))
        .with_context(|| format!("`{base}` is not a usable base URL"))?;
    let webhook = Endpoint::of(&webhook_url)?;
    // Only for the preflight check; the load goes through the senders' own connections.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    preflight(&client, &base).await?;

    if args.sink_listen.is_some() && args.conversations < args.concurrency {
        eprintln!(
            "note: --conversations {} is below --concurrency {}: a prospect may have two \
             webhooks in flight, and replies may pair with the wrong one of them",
            args.conversations, args.concurrency
        );
    }

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let tracker = args
        .sink_listen
        .map(|_| Arc::new(ReplyTracker::new(run_id.clone(), args.conversations)));
    let sink = match (args.sink_listen, &tracker) {
        (Some(addr), Some(tracker)) => {
            let sink = sink::start(addr, tracker.clone()).await?;
            eprintln!(
                "reply sink listening on {0}; the server must run with \
                 WHATSAPP_API_BASE=http://{0}/v21.0",
                sink.addr
            );
            Some(sink)
        }
        _ => None,
    };

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let workload = Arc::new(Workload::new(
        run_id,
        args.phone_number_id.clone(),
        args.text.clone(),
        args.conversations,
        now,
        Signer::new(args.app_secret.expose_secret().as_bytes()),
    ));
    let target = Target {
        webhook,
        timeout: args.timeout,
        tracker: tracker.clone(),
    };

    if args.warmup > 0 {
        eprintln!("warming up: {} webhooks", args.warmup);
        let source = Arc::new(Source::prepared(workload.clone(), 0, args.warmup, false));
        let stats = run_phase(&target, source, concurrency, None).await;
        check_warmup(&stats, &base)?;
        if let Some(tracker) = &tracker {
            let drained = drain(tracker, false, args.drain_timeout).await;
            if tracker.results().warmup_replies == 0 {
                bail!(
                    "no reply reached the sink during warm-up: start the server with \
                     WHATSAPP_API_BASE=http://{}/v21.0",
                    sink.as_ref().map_or(String::new(), |s| s.addr.to_string())
                );
            }
            if !drained {
                eprintln!(
                    "note: {} warm-up replies still outstanding after {}",
                    tracker.outstanding(false),
                    format_duration(args.drain_timeout)
                );
            }
        }
    }

    let first_seq = args.warmup;
    let (source, preparation) = match args.duration {
        Some(_) => (Source::lazy(workload.clone(), first_seq, None, true), None),
        None if args.requests > PREPARE_AT_MOST => {
            eprintln!(
                "note: more than {PREPARE_AT_MOST} requests: bodies are built and signed as they \
                 are sent, not before"
            );
            (
                Source::lazy(workload.clone(), first_seq, Some(args.requests), true),
                None,
            )
        }
        None => {
            let started = Instant::now();
            let source = Source::prepared(workload.clone(), first_seq, args.requests, true);
            let elapsed = started.elapsed();
            let preparation = Preparation {
                bodies: args.requests,
                elapsed_secs: elapsed.as_secs_f64(),
                per_body_us: per(elapsed.as_secs_f64() * 1e6, args.requests as f64),
            };
            (source, Some(preparation))
        }
    };
    let source = Arc::new(source);

    eprintln!("measuring");
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let stats = run_phase(&target, source.clone(), concurrency, args.duration).await;
    let send_wall = started.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));

    let webhook_elapsed = stats
        .last_done
        .map_or(send_wall, |t| t.saturating_duration_since(started));
    let sent = stats.sent();
    let acknowledged = stats.acknowledged();
    let webhooks = WebhookFigures {
        sent,
        acknowledged,
        elapsed_secs: webhook_elapsed.as_secs_f64(),
        acknowledged_per_sec: per(acknowledged as f64, webhook_elapsed.as_secs_f64()),
        statuses: stats
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .collect(),
        errors: stats
            .errors
            .iter()
            .map(|(kind, n)| ((*kind).to_owned(), *n))
            .collect(),
        latency: LatencySummary::of(&stats.latency),
    };

    let replies = match (&tracker, &sink) {
        (Some(tracker), Some(sink)) => {
            if tracker.outstanding(true) > 0 {
                eprintln!(
                    "waiting up to {} for replies",
                    format_duration(args.drain_timeout)
                );
            }
            drain(tracker, true, args.drain_timeout).await;
            let results = tracker.results();
            let elapsed = results
                .last_reply
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
            Some(ReplyFigures {
                sink: sink.addr.to_string(),
                expected: acknowledged,
                received: results.replies,
                elapsed_secs: elapsed.as_secs_f64(),
                replies_per_sec: per(results.replies as f64, elapsed.as_secs_f64()),
                missing: tracker.outstanding(true) as u64,
                duplicates: results.duplicates,
                unmatched: results.unmatched,
                mark_reads: results.mark_reads,
                warmup_replies: results.warmup_replies,
                latency: LatencySummary::of(&results.end_to_end),
            })
        }
        _ => None,
    };
    drop(sink);

    let generator = GeneratorCost {
        cpu_secs: cpu.map(|c| c.as_secs_f64()),
        cpu_us_per_request: cpu.map(|c| per(c.as_secs_f64() * 1e6, sent as f64)),
        cores: cpu.map(|c| per(c.as_secs_f64(), send_wall.as_secs_f64())),
    };
    let config = Config {
        url: base,
        phone_number_id: args.phone_number_id.clone(),
        concurrency: args.concurrency,
        requests: args.duration.is_none().then_some(args.requests),
        duration_secs: args.duration.map(|d| d.as_secs_f64()),
        conversations: args.conversations,
        warmup: args.warmup,
        text: args.text.clone(),
        sink_listen: args.sink_listen.map(|a| a.to_string()),
        drain_timeout_secs: args.drain_timeout.as_secs_f64(),
        timeout_secs: args.timeout.as_secs_f64(),
    };
    Ok(Report {
        config,
        preparation,
        webhooks,
        replies,
        generator,
    })
}

/// Fails fast, with a sentence, when nothing listens at `base`.
async fn preflight(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    match client
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Err(e) if e.is_connect() || e.is_timeout() => {
            bail!("could not reach Parley at {base}: is `parley serve` running?")
        }
        _ => Ok(()),
    }
}

/// Stops a run whose warm-up shows the measured phase would be meaningless.
fn check_warmup(stats: &AckStats, base: &str) -> anyhow::Result<()> {
    if stats.acknowledged() > 0 {
        return Ok(());
    }
    if stats.statuses.contains_key(&401) {
        bail!(
            "{base} rejected the webhook signatures (401): --app-secret (WHATSAPP_APP_SECRET) must \
             be the server's WHATSAPP_APP_SECRET"
        );
    }
    if stats.errors.contains_key("connect") {
        bail!("could not reach Parley at {base}: is `parley serve` running?");
    }
    bail!(
        "no warm-up webhook was acknowledged (statuses {:?}, errors {:?})",
        stats.statuses,
        stats.errors
    )
}

/// Waits until every owed reply has arrived or `timeout` runs out; true if all arrived.
async fn drain(tracker: &ReplyTracker, counted_only: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if tracker.outstanding(counted_only) == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `amount / over`, or 0 when `over` is 0.
fn per(amount: f64, over: f64) -> f64 {
    if over > 0.0 { amount / over } else { 0.0 }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}s")
    } else if secs < 1.0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{secs}s")
    }
}

impl Config {
    /// The command line that runs this configuration again.
    pub fn command_line(&self) -> String {
        let mut line = format!(
            "parley bench --url {} --phone-number-id {} --concurrency {}",
            self.url, self.phone_number_id, self.concurrency
        );
        match (self.requests, self.duration_secs) {
            (_, Some(secs)) => {
                let _ = write!(
                    line,
                    " --duration {}",
                    format_duration(Duration::from_secs_f64(secs))
                );
            }
            (Some(n), None) => {
                let _ = write!(line, " --requests {n}");
            }
            (None, None) => {}
        }
        let _ = write!(
            line,
            " --conversations {} --warmup {} --text {}",
            self.conversations,
            self.warmup,
            shell_quote(&self.text)
        );
        if let Some(sink) = &self.sink_listen {
            let _ = write!(
                line,
                " --sink-listen {sink} --drain-timeout {}",
                format_duration(Duration::from_secs_f64(self.drain_timeout_secs))
            );
        }
        line
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Report {
    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(out, "Parley bench against {}/webhooks/whatsapp", c.url);
        let phase = match (c.requests, c.duration_secs) {
            (_, Some(secs)) => format!("for {}", format_duration(Duration::from_secs_f64(secs))),
            (Some(n), None) => format!("{n} requests"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "  configuration: concurrency {}, {phase}, {} conversations, {} warm-up, {}-byte text{}",
            c.concurrency,
            c.conversations,
            c.warmup,
            c.text.len(),
            c.sink_listen
                .as_deref()
                .map_or(String::new(), |s| format!(", reply sink at {s}"))
        );
        let _ = writeln!(
            out,
            "  reproduce: {} (app secret from WHATSAPP_APP_SECRET)",
            c.command_line()
        );
        if let Some(p) = &self.preparation {
            let _ = writeln!(
                out,
                "  prepared {} signed bodies in {:.3} s ({:.1} µs each), before the clock started",
                p.bodies, p.elapsed_secs, p.per_body_us
            );
        }

        let w = &self.webhooks;
        let _ = writeln!(out, "webhooks");
        let _ = writeln!(
            out,
            "  sent {} in {:.2} s; acknowledged (2xx) {}: {:.0}/s",
            w.sent, w.elapsed_secs, w.acknowledged, w.acknowledged_per_sec
        );
        let statuses: Vec<String> = w
            .statuses
            .iter()
            .map(|(status, n)| format!("{status} × {n}"))
            .chain(
                w.errors
                    .iter()
                    .map(|(kind, n)| format!("{kind} error × {n}")),
            )
            .collect();
        let _ = writeln!(
            out,
            "  answers: {}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            }
        );
        let _ = writeln!(out, "  ack latency: {}", w.latency.describe());
        if w.statuses.contains_key("401") {
            let _ = writeln!(
                out,
                "  401 means a bad signature: --app-secret must match the server's WHATSAPP_APP_SECRET"
            );
        }

        if let Some(r) = &self.replies {
            let _ = writeln!(out, "replies (end to end, sink at {})", r.sink);
            let _ = writeln!(
                out,
                "  received {} of {} in {:.2} s: {:.0}/s",
                r.received, r.expected, r.elapsed_secs, r.replies_per_sec
            );
            let _ = writeln!(
                out,
                "  missing after {} drain: {}; duplicates: {}; unmatched: {}; mark-read requests: {}",
                format_duration(Duration::from_secs_f64(c.drain_timeout_secs)),
                r.missing,
                r.duplicates,
                r.unmatched,
                r.mark_reads
            );
            let _ = writeln!(out, "  end-to-end latency: {}", r.latency.describe());
        }

        let g = &self.generator;
        let _ = writeln!(out, "generator");
        match (g.cpu_secs, g.cpu_us_per_request, g.cores) {
            (Some(cpu), Some(per_request), Some(cores)) => {
                let _ = writeln!(
                    out,
                    "  {cpu:.2} s CPU while sending ({per_request:.0} µs per request{}), {cores:.2} cores",
                    if self.replies.is_some() {
                        ", sink included"
                    } else {
                        ""
                    }
                );
            }
            _ => {
                let _ = writeln!(out, "  CPU time not available on this platform");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
