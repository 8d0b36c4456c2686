//! `parley eval agents <scenarios.yaml> [--json]`: scripted conversations through the real
//! pipeline, in process. One server is built on embedded defaults (a temporary data dir with
//! SQLite, the in-process queue and memory, the shipped `prompts/` and `knowledge/`), and each
//! scenario talks to it as a web visitor of its own; the bot's replies and any handoff are read
//! back from the store and checked against the scenario's expectations (agent, handoff and its
//! reason, facts the reply must contain).
//!
//! Without `OPENAI_API_KEY` the offline brain answers; with it (and `OPENAI_BASE_URL`,
//! `PARLEY_CHAT_MODEL`) the model does, as in production. The report gives the pass rate and the
//! two headline figures of the agents: how often a question the documents cannot answer is
//! handed to a person (target >= 95%), and how often one they can answer is (target < 10%).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState, BuildOptions};
use crate::config::Config;
use crate::domain::{Author, Channel, ConversationId, Direction, TenantId};

/// Scenarios run at once (each is its own conversation).
const CONCURRENCY: usize = 8;
/// The longest a turn may take to be handled before it counts as unanswered.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    /// The scenarios, a YAML file (see eval/agents/demo.yaml for the format).
    pub scenarios: PathBuf,
    /// Print only the figures and the failures as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also print each turn's intent, agent, confidence and retrieval coverage.
    #[arg(long)]
    pub verbose: bool,
}

/// A scenarios file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub scenarios: Vec<Scenario>,
}

/// Which headline figure a scenario counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The documents answer it: the bot should, without a person.
    Answerable,
    /// The documents do not answer it: a person should.
    Unanswerable,
}

/// One scripted conversation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub kind: Option<Kind>,
    pub turns: Vec<ScriptTurn>,
    /// Checks on the last turn.
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// One prospect message and, optionally, what should come of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTurn {
    pub say: String,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// What a turn should produce; absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The agent that answered (the name of its file in `prompts/agents/`).
    pub agent: Option<String>,
    /// Whether the conversation was handed to a person on this turn.
    pub handoff: Option<bool>,
    /// The handoff's recorded reason.
    pub reason: Option<String>,
    /// Substrings (case-insensitive) the reply must contain.
    #[serde(default)]
    pub facts: Vec<String>,
}

/// Reads a scenarios file, checking that every scenario has turns and a unique name.
pub fn parse_scenarios(text: &str) -> Result<ScenarioFile, String> {
    let file: ScenarioFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut names = std::collections::BTreeSet::new();
    for scenario in &file.scenarios {
        if scenario.turns.is_empty() {
            return Err(format!("scenario `{}` has no turns", scenario.name));
        }
        if !names.insert(scenario.name.as_str()) {
            return Err(format!("two scenarios are named `{}`", scenario.name));
        }
    }
    if file.scenarios.is_empty() {
        return Err("the file has no scenarios".into());
    }
    Ok(file)
}

/// What happened on one turn.
#[derive(Debug, Clone, Serialize)]
pub struct TurnOutcome {
    pub reply: String,
    pub agent: Option<String>,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    /// The confidence factors stored with the reply (JSON), when an agent answered.
    pub factors: Option<serde_json::Value>,
    /// The reason of the handoff opened on this turn, if one was.
    pub handoff: Option<String>,
}

/// One scenario's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub kind: Option<Kind>,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub failure: String,
    /// Whether any turn handed the conversation to a person.
    pub handed_off: bool,
    pub turns: Vec<TurnOutcome>,
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `offline` or `llm`.
    pub brain: String,
    pub scenarios: usize,
    pub passed: usize,
    pub pass_rate: f64,
    pub unanswerable: usize,
    pub handoff_rate_unanswerable: f64,
    pub answerable: usize,
    pub handoff_rate_answerable: f64,
    pub results: Vec<ScenarioResult>,
}

impl Report {
    fn new(brain: &str, results: Vec<ScenarioResult>) -> Self {
        let rate = |kind: Kind| {
            let of_kind: Vec<&ScenarioResult> =
                results.iter().filter(|r| r.kind == Some(kind)).collect();
            let handed = of_kind.iter().filter(|r| r.handed_off).count();
            (of_kind.len(), ratio(handed, of_kind.len()))
        };
        let (unanswerable, handoff_rate_unanswerable) = rate(Kind::Unanswerable);
        let (answerable, handoff_rate_answerable) = rate(Kind::Answerable);
        let passed = results.iter().filter(|r| r.passed).count();
        Self {
            brain: brain.to_owned(),
            scenarios: results.len(),
            passed,
            pass_rate: ratio(passed, results.len()),
            unanswerable,
            handoff_rate_unanswerable,
            answerable,
            handoff_rate_answerable,
            results,
        }
    }

    /// The JSON printed by `--json`: the figures and the failures.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "brain": self.brain,
            "scenarios": self.scenarios,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
            "unanswerable": self.unanswerable,
            "handoff_rate_unanswerable": self.handoff_rate_unanswerable,
            "answerable": self.answerable,
            "handoff_rate_answerable": self.handoff_rate_answerable,
            "failures": self.results.iter().filter(|r| !r.passed)
                .map(|r| serde_json::json!({"name": r.name, "reason": r.failure}))
                .collect::<Vec<_>>(),
        })
    }

    /// The human-readable report; `verbose` adds a line per turn.
    pub fn render(&self, verbose: bool) -> String {
        let mut out = String::new();
        for r in &self.results {
            if r.passed {
                out.push_str(&format!("PASS  {}\n", r.name));
            } else {
                out.push_str(&format!("FAIL  {}: {}\n", r.name, r.failure));
            }
            if verbose {
                for t in &r.turns {
                    out.push_str(&format!(
                        "      intent {} agent {} confidence {} retrieval {} handoff {}\n",
                        t.intent.as_deref().unwrap_or("-"),
                        t.agent.as_deref().unwrap_or("-"),
                        t.confidence.map_or("-".to_owned(), |c| format!("{c:.2}")),
                        t.factors
                            .as_ref()
                            .and_then(|f| f["retrieval"].as_f64())
                            .map_or("-".to_owned(), |c| format!("{c:.2}")),
                        t.handoff.as_deref().unwrap_or("-"),
                    ));
                }
            }
        }
        let count = |kind: Kind| {
            self.results
                .iter()
                .filter(|r| r.kind == Some(kind) && r.handed_off)
                .count()
        };
        out.push_str(&format!(
            "\nbrain                                   {}\n\
             scenarios passed                        {}/{} ({:.1}%)\n\
             handoff rate, unanswerable questions    {}/{} ({:.1}%, target >= 95%)\n\
             handoff rate, answerable questions      {}/{} ({:.1}%, target < 10%)\n",
            self.brain,
            self.passed,
            self.scenarios,
            self.pass_rate * 100.0,
            count(Kind::Unanswerable),
            self.unanswerable,
            self.handoff_rate_unanswerable * 100.0,
            count(Kind::Answerable),
            self.answerable,
            self.handoff_rate_answerable * 100.0,
        ));
        out
    }
}

fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// A server built for evaluation, on embedded defaults, reused across scenarios.
pub struct EvalRig {
    state: Arc<AppState>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Settings taken from the process environment for an evaluation (the model, and where the
/// prompts and documents are); every other setting is an embedded default.
pub const PASSED_THROUGH: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PARLEY_CHAT_MODEL",
    "PARLEY_EMBEDDING_MODEL",
    "PARLEY_LLM_TIMEOUT_MS",
    "PARLEY_PROMPTS_DIR",
    "PARLEY_KNOWLEDGE_DIR",
    "PARLEY_CONFIG",
];

impl EvalRig {
    /// Builds and starts the server. `env` adds to (or replaces) the embedded defaults: the
    /// model's settings, `PARLEY_PROMPTS_DIR`, `PARLEY_KNOWLEDGE_DIR`, `PARLEY_CONFIG`.
    pub async fn start(env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary data dir")?;
        let empty_config = dir.path().join("parley.toml");
        std::fs::write(&empty_config, "").context("cannot write a temporary parley.toml")?;
        let mut vars: BTreeMap<String, String> = [
            (
                "PARLEY_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            ("PARLEY_PROMPTS_DIR", "prompts".to_owned()),
            ("PARLEY_KNOWLEDGE_DIR", "knowledge".to_owned()),
            ("PARLEY_KNOWLEDGE_AUTOLOAD", "true".to_owned()),
            ("PARLEY_CONFIG", empty_config.display().to_string()),
            (
                "PARLEY_ADMIN_TOKEN",
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            ("PARLEY_LEADS_MX_CHECK", "false".to_owned()),
            ("PARLEY_LISTEN", "127.0.0.1:0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let knowledge_dir = PathBuf::from(&vars["PARLEY_KNOWLEDGE_DIR"]);
        if !knowledge_dir.is_dir() {
            anyhow::bail!(
                "PARLEY_KNOWLEDGE_DIR: {} is not a folder (run from the repository, or set it)",
                knowledge_dir.display()
            );
        }
        let config = Config::from_sources(&vars)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port")?;
        let app = App::build_with(config, listener, BuildOptions::default()).await?;
        let state = app.state();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Ok(Self {
            state,
            shutdown,
            handle: Some(handle),
            _dir: dir,
        })
    }

    /// The running application's state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Runs every scenario (several at once, each in its own conversation) and reports.
    pub async fn run(&self, file: &ScenarioFile) -> Report {
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let results: Vec<ScenarioResult> = futures::stream::iter(file.scenarios.iter().enumerate())
            .map(|(i, scenario)| {
                let visitor = format!("eval-{}-{i}", &run_id[..12]);
                async move { self.run_scenario(scenario, &visitor).await }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let brain = if self.state.llm.is_some() {
            "llm"
        } else {
            "offline"
        };
        Report::new(brain, results)
    }

    async fn run_scenario(&self, scenario: &Scenario, visitor: &str) -> ScenarioResult {
        let tenant = TenantId::default_tenant();
        let conversation = ConversationId::derive(&tenant, Channel::Web, visitor);
        let mut outcomes = Vec::new();
        let mut failures = Vec::new();
        let last = scenario.turns.len() - 1;
        let mut handed_off_at = None;
        for (i, turn) in scenario.turns.iter().enumerate() {
            let expect = if i == last {
                turn.expect.as_ref().or(scenario.expect.as_ref())
            } else {
                turn.expect.as_ref()
            };
            if let Some(at) = handed_off_at {
                if expect.is_some() {
                    failures.push(format!(
                        "turn {}: not answered, the conversation was handed off at turn {at}",
                        i + 1
                    ));
                }
                continue;
            }
            match self.say(conversation, visitor, &turn.say).await {
                Ok(outcome) => {
                    if let Some(expect) = expect {
                        failures.extend(
                            check(expect, &outcome)
                                .into_iter()
                                .map(|f| format!("turn {}: {f}", i + 1)),
                        );
                    }
                    if outcome.handoff.is_some() {
                        handed_off_at = Some(i + 1);
                    }
                    outcomes.push(outcome);
                }
                Err(err) => {
                    failures.push(format!("turn {}: {err:#}", i + 1));
                    break;
                }
            }
        }
        ScenarioResult {
            name: scenario.name.clone(),
            kind: scenario.kind,
            passed: failures.is_empty(),
            failure: failures.join("; "),
            handed_off: handed_off_at.is_some(),
            turns: outcomes,
        }
    }

    /// Sends one message as the visitor, waits until the pipeline handled it, and reads back
    /// what the bot said and whether it handed off.
    async fn say(
        &self,
        conversation: ConversationId,
        visitor: &str,
        text: &str,
    ) -> anyhow::Result<TurnOutcome> {
        let store = &self.state.store;
        let before = store.list_messages(conversation, 1000).await?.len();
        let had_handoff = store.open_handoff_of(conversation).await?.is_some();
        let message = crate::domain::InboundMessage {
            tenant: TenantId::default_tenant(),
            channel: Channel::Web,
            provider_message_id: crate::domain::ProviderMessageId::parse(&format!(
                "web:{}",
                uuid::Uuid::now_v7()
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
            sender: visitor.to_owned(),
            thread: visitor.to_owned(),
            sender_name: None,
            sent_at_ms: self.state.clock.now_ms(),
            content: crate::domain::MessageContent::Text {
                body: text.to_owned(),
            },
            context: None,
            referral: None,
        };
        // The web channel's own entry point (what `POST /api/v1/web/messages` calls).
        self.state
            .recorder
            .record(vec![message], Vec::new())
            .await?;
        let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
        loop {
            if store.pending_inbound(conversation, 1).await?.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("no answer within {TURN_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let messages = store.list_messages(conversation, 1000).await?;
        let new = &messages[before.min(messages.len())..];
        let inbound = new.iter().find(|m| m.direction == Direction::Inbound);
        let bot: Vec<_> = new.iter().filter(|m| m.author == Author::Bot).collect();
        let handoff = if had_handoff {
            None
        } else {
            store.open_handoff_of(conversation).await?.map(|h| h.reason)
        };
        Ok(TurnOutcome {
            reply: bot
                .iter()
                .filter_map(|m| m.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
            agent: bot.iter().find_map(|m| m.agent.clone()),
            intent: inbound.and_then(|m| m.intent.clone()),
            confidence: bot
                .first()
                .and_then(|m| m.confidence)
                .or(inbound.and_then(|m| m.confidence)),
            factors: bot
                .iter()
                .find_map(|m| m.confidence_factors.as_deref())
                .and_then(|f| serde_json::from_str(f).ok()),
            handoff,
        })
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

/// What is wrong with a turn's outcome: one clause per problem, then what the bot did (once).
fn check(expect: &Expect, outcome: &TurnOutcome) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(agent) = &expect.agent
        && outcome.agent.as_deref() != Some(agent.as_str())
    {
        problems.push(format!("expected the {agent} agent"));
    }
    match (expect.handoff, &outcome.handoff) {
        (Some(true), None) => problems.push("expected a handoff".to_owned()),
        (Some(false), Some(reason)) => problems.push(format!("unexpected handoff ({reason})")),
        _ => {}
    }
    if let Some(reason) = &expect.reason
        && outcome.handoff.as_deref() != Some(reason.as_str())
    {
        problems.push(format!(
            "expected handoff reason {reason}, got {}",
            outcome.handoff.as_deref().unwrap_or("no handoff")
        ));
    }
    let reply = outcome.reply.to_lowercase();
    let missing: Vec<&str> = expect
        .facts
        .iter()
        .filter(|f| !reply.contains(&f.to_lowercase()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing {missing:?}"));
    }
    if !problems.is_empty() {
        let last = problems.len() - 1;
        problems[last] = format!(
            "{} (intent {}, agent {}, confidence {}{}; replied {:?})",
            problems[last],
            outcome.intent.as_deref().unwrap_or("none"),
            outcome.agent.as_deref().unwrap_or("none"),
            outcome
                .confidence
                .map_or("none".to_owned(), |c| format!("{c:.2}")),
            outcome
                .factors
                .as_ref()
                .and_then(|f| f["retrieval"].as_f64())
                .map_or(String::new(), |r| format!(", retrieval {r:.2}")),
            outcome.reply
        );
    }
    problems
}

/// Reads the scenarios, builds the server from `env`, runs them and stops the server.
pub async fn evaluate(path: &Path, env: &BTreeMap<String, String>) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = parse_scenarios(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let rig = EvalRig::start(env).await?;
    let report = rig.run(&file).await;
    rig.stop().await;
    Ok(report)
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = PASSED_THROUGH
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    let report = evaluate(&args.scenarios, &env).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report.summary_json())?);
    } else {
        print!("{}", report.render(args.verbose));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_with_turn_and_scenario_expectations() {
        let file = parse_scenarios(
            "scenarios:\n  - name: a\n    kind: answerable\n    turns: [{say: hi}]\n    expect: {handoff: false, facts: [x]}\n  - name: b\n    turns:\n      - say: one\n        expect: {agent: pricing}\n      - say: two\n",
        )
        .unwrap();
        assert_eq!(file.scenarios.len(), 2);
        assert_eq!(file.scenarios[0].kind, Some(Kind::Answerable));
        assert_eq!(file.scenarios[0].expect.as_ref().unwrap().facts, ["x"]);
        assert_eq!(
            file.scenarios[1].turns[0]
                .expect
                .as_ref()
                .unwrap()
                .agent
                .as_deref(),
            Some("pricing")
        );
        assert!(parse_scenarios("scenarios: []").is_err());
        assert!(parse_scenarios("scenarios:\n  - name: a\n    turns: []\n").is_err());
        assert!(
            parse_scenarios("scenarios:\n  - name: a\n    turns: [{say: x, sya: y}]\n").is_err()
        );
    }

    #[test]
    fn checks_name_each_unmet_expectation() {
        let outcome = TurnOutcome {
            reply: "A 2 BHK starts at ₹1.12 Cr.".into(),
            agent: Some("pricing".into()),
            intent: Some("pricing".into()),
            confidence: Some(0.8),
            factors: None,
            handoff: None,
        };
        let ok = Expect {
            agent: Some("pricing".into()),
            handoff: Some(false),
            reason: None,
            facts: vec!["1.12 cr".into()],
        };
        assert!(check(&ok, &outcome).is_empty());
        let bad = Expect {
            agent: Some("property".into()),
            handoff: Some(true),
            reason: Some("low_confidence".into()),
            facts: vec!["June 2028".into()],
        };
        assert_eq!(
            check(&bad, &outcome).len(),
            4,
            "{:?}",
            check(&bad, &outcome)
        );
    }
}
