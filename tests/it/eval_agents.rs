//! The agents' quality gate: the shipped scenarios (`eval/agents/demo.yaml`) run through the real
//! pipeline, on the offline brain and on the model path against the fake OpenAI-compatible server,
//! and the handoff rates must meet the targets (>= 95% on unanswerable questions, < 10% on
//! answerable ones).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use parley::cli::eval_agents::{EvalRig, Kind, Report, parse_scenarios};
use parley::testkit::fake_openai::{FakeOpenAi, ScriptedReply};
use serde_json::{Value, json};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_path() -> PathBuf {
    manifest().join("eval/agents/demo.yaml")
}

fn base_env() -> BTreeMap<String, String> {
    let m = manifest();
    [
        ("PARLEY_PROMPTS_DIR", m.join("prompts")),
        ("PARLEY_KNOWLEDGE_DIR", m.join("knowledge")),
        ("PARLEY_CONFIG", m.join("tests/data/empty.toml")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.display().to_string()))
    .collect()
}

fn assert_targets(report: &Report) {
    println!("{}", report.render(false));
    assert!(
        report.unanswerable >= 25 && report.answerable >= 40,
        "the shipped set is too small: {} unanswerable, {} answerable",
        report.unanswerable,
        report.answerable
    );
    assert!(
        report.handoff_rate_unanswerable >= 0.95,
        "handoff on unanswerable questions {:.3} < 0.95\n{}",
        report.handoff_rate_unanswerable,
        report.render(false)
    );
    assert!(
        report.handoff_rate_answerable < 0.10,
        "handoff on answerable questions {:.3} >= 0.10\n{}",
        report.handoff_rate_answerable,
        report.render(false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_brain_meets_the_handoff_targets_on_the_shipped_scenarios() {
    let report = parley::cli::eval_agents::evaluate(&demo_path(), &base_env())
        .await
        .unwrap();
    assert_eq!(report.brain, "offline");
    assert_targets(&report);
    assert!(
        report.pass_rate >= 0.9,
        "pass rate {:.3}\n{}",
        report.pass_rate,
        report.render(false)
    );
}

/// The question inside an agent-answer request's user message.
fn question_of(user: &str) -> &str {
    user.split("<question>")
        .nth(1)
        .and_then(|q| q.split("</question>").next())
        .unwrap_or("")
}

/// The passages (id, text) inside an agent-answer request's user message.
fn passages_of(user: &str) -> Vec<(String, String)> {
    user.split("<passage id=\"")
        .skip(1)
        .filter_map(|chunk| {
            let (id, rest) = chunk.split_once('"')?;
            let text = rest.split_once(">\n")?.1.split("\n</passage>").next()?;
            Some((id.to_owned(), text.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_path_meets_the_handoff_targets_against_the_fake_model() {
    let text = std::fs::read_to_string(demo_path()).unwrap();
    let file = parse_scenarios(&text).unwrap();
    // The fake model knows which questions the documents answer (as a good model would, from
    // the passages): grounded answers citing them for those, "I don't know" for the others.
    let kinds: HashMap<String, Kind> = file
        .scenarios
        .iter()
        .filter_map(|s| s.kind.map(|k| (s.turns.last().unwrap().say.clone(), k)))
        .collect();
    let catalog =
        parley::llm::IntentCatalog::load(&manifest().join("prompts/intents.toml")).unwrap();
    let classifier = parley::llm::IntentClassifier::train(&catalog);
    let fake = FakeOpenAi::start().await;
    fake.set_responder_for_schema("intent_classification", move |body| {
        let text = body["messages"][1]["content"].as_str().unwrap_or("");
        let best = classifier.predict(text).best;
        ScriptedReply::json(json!({"intent": best, "confidence": 0.9, "entities": {}}))
    });
    fake.set_reply_for_schema("lead_facts", ScriptedReply::json(json!({})));
    let answerable = kinds.clone();
    fake.set_responder_for_schema("agent_answer", move |body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let question = question_of(user).trim();
        let passages = passages_of(user);
        match answerable.get(question) {
            Some(Kind::Answerable) if !passages.is_empty() => ScriptedReply::json(json!({
                "answer": passages.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" "),
                "citations": passages.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
                "answerable": true
            })),
            _ => ScriptedReply::json(json!({
                "answer": "I don't know; I will connect you with our team.",
                "citations": [],
                "answerable": false
            })),
        }
    });
    let mut env = base_env();
    env.insert("OPENAI_API_KEY".into(), "sk-test".into());
    env.insert("OPENAI_BASE_URL".into(), fake.base_url());
    env.insert("PARLEY_LLM_TIMEOUT_MS".into(), "5000".into());
    let rig = EvalRig::start(&env).await.unwrap();
    let report = rig.run(&file).await;
    rig.stop().await;
    assert_eq!(report.brain, "llm");
    assert_targets(&report);
    // The model answered the agents' questions (this is the model path, not the fallback).
    let asked: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r.body["response_format"]["json_schema"]["name"] == "agent_answer")
        .map(|r| r.body)
        .collect();
    assert!(
        asked.len() >= 40,
        "only {} agent answers were asked of the model",
        asked.len()
    );
    // Unanswerable questions that reached an agent were handed off because the model cited
    // nothing: their confidence is the ungrounded one.
    let through_agents: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.kind == Some(Kind::Unanswerable))
        .filter_map(|r| r.turns.last())
        .filter(|t| t.agent.is_some())
        .collect();
    assert!(!through_agents.is_empty());
    assert!(
        through_agents
            .iter()
            .all(|t| t.handoff.is_some() && t.confidence.is_some_and(|c| c <= 0.5)),
        "{through_agents:#?}"
    );
}
