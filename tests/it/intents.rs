//! Intent detection end to end: the shipped catalogue trains a classifier that gets the demo
//! business's messages right and abstains on the rest, and the LLM path falls back to it
//! whenever the (fake) OpenAI API misbehaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parley::llm::eval::{self, ScoredRow};
use parley::llm::{
    IntentCatalog, IntentClassifier, IntentDetector, LlmClient, LlmSettings, PredictionSource,
};
use parley::testkit::fake_openai::{FakeOpenAi, ScriptedReply};
use serde_json::json;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn shipped_catalog() -> IntentCatalog {
    IntentCatalog::load(&repo_file("prompts/intents.toml")).expect("the shipped catalogue loads")
}

fn trained() -> (IntentCatalog, IntentClassifier) {
    let catalog = shipped_catalog();
    let classifier = IntentClassifier::train(&catalog);
    (catalog, classifier)
}

#[test]
fn the_shipped_catalogue_has_every_demo_intent_with_enough_examples() {
    let catalog = shipped_catalog();
    let names: Vec<&str> = catalog.names().collect();
    for name in [
        "greeting",
        "pricing",
        "product_info",
        "scheduling",
        "support",
        "human_request",
        "smalltalk",
        "opt_out",
        "other",
    ] {
        assert!(names.contains(&name), "missing intent {name}");
    }
    for intent in catalog.intents() {
        let n = intent.examples.len();
        assert!((25..=60).contains(&n), "{} has {n} examples", intent.name);
        assert!(
            !intent.description.is_empty(),
            "{} has no description",
            intent.name
        );
    }
    assert_eq!(catalog.out_of_scope_labels(), ["other"]);
}

#[test]
fn the_shipped_catalogue_classifies_obvious_messages_right() {
    let (_, classifier) = trained();
    for (text, intent) in [
        ("Hi there!", "greeting"),
        ("what is the price of a 3bhk in Skyline Meadows?", "pricing"),
        ("2 bhk ka rate kya hai", "pricing"),
        ("do you have a swimming pool and gym", "product_info"),
        ("when is possession for skyline heights", "product_info"),
        ("I want to book a site visit on Saturday", "scheduling"),
        ("I paid my installment but didn't get a receipt", "support"),
        ("let me talk to a real person", "human_request"),
        ("thanks a lot", "smalltalk"),
        ("please stop messaging me", "opt_out"),
        ("don't text me again", "opt_out"),
    ] {
        let p = classifier.predict(text);
        assert_eq!(p.intent.as_deref(), Some(intent), "{text:?} -> {p:?}");
        assert_eq!(p.source, PredictionSource::Offline);
        assert_eq!(p.entities, json!({}));
    }
}

#[test]
fn the_classifier_abstains_on_gibberish_and_off_topic_messages() {
    let (_, classifier) = trained();
    for text in [
        "qwxz vbnm plkj",
        "",
        "🙂🙂🙂",
        "who won the world cup in 2011",
        "write me a haiku about autumn leaves",
        "what's the weather in chennai",
    ] {
        let p = classifier.predict(text);
        assert_eq!(p.intent, None, "{text:?} -> {p:?}");
    }
}

#[test]
fn the_classifier_answers_in_microseconds() {
    let (_, classifier) = trained();
    let started = std::time::Instant::now();
    for _ in 0..200 {
        std::hint::black_box(classifier.predict("what is the price of a 2bhk in baner"));
    }
    let per_message = started.elapsed() / 200;
    // Generous for an unoptimised test build; a release build is far faster.
    assert!(
        per_message < Duration::from_millis(5),
        "{per_message:?} per message"
    );
}

/// The bar for the demo: on the held-out test set (not copied from the catalogue), with the
/// catalogue's own threshold, in-scope accuracy >= 0.85, macro-F1 >= 0.85 and out-of-scope
/// recall >= 0.65.
#[test]
fn the_demo_test_set_meets_the_stated_bar() {
    let (catalog, classifier) = trained();
    let rows = eval::read_labeled_csv(&repo_file("eval/intents_test.csv")).unwrap();
    assert!(rows.len() >= 150);
    assert!(rows.iter().filter(|r| r.label == eval::OOS_LABEL).count() >= 40);
    let scored: Vec<ScoredRow> = rows
        .iter()
        .map(|r| {
            let p = classifier.predict_with_threshold(&r.text, 0.0);
            ScoredRow {
                gold: r.label.clone(),
                best: p.best,
                confidence: p.confidence,
            }
        })
        .collect();
    let m = eval::evaluate(&scored, catalog.out_of_scope_labels(), catalog.threshold()).metrics;
    assert!(m.accuracy >= 0.85, "{m:?}");
    assert!(m.macro_f1 >= 0.85, "{m:?}");
    assert!(m.oos_recall >= 0.65, "{m:?}");
}

#[test]
fn the_demo_test_and_validation_sets_do_not_repeat_training_examples() {
    let catalog = shipped_catalog();
    let training: std::collections::HashSet<String> = catalog
        .intents()
        .iter()
        .flat_map(|i| i.examples.iter().map(|e| e.trim().to_lowercase()))
        .collect();
    for file in ["eval/intents_test.csv", "eval/intents_validation.csv"] {
        for row in eval::read_labeled_csv(&repo_file(file)).unwrap() {
            assert!(
                !training.contains(&row.text.trim().to_lowercase()),
                "{file}: {:?} is a training example",
                row.text
            );
        }
    }
}

// --- the LLM in front, against a local fake of the OpenAI API ---

const KEY: &str = "sk-test-not-a-real-key";

fn llm(fake: &FakeOpenAi, timeout: Duration) -> LlmClient {
    LlmClient::new(LlmSettings {
        api_key: KEY.to_string().into(),
        base_url: Some(fake.base_url()),
        chat_model: "gpt-test-mini".into(),
        timeout,
    })
}

fn detector(fake: &FakeOpenAi, timeout: Duration) -> IntentDetector {
    let (catalog, classifier) = trained();
    IntentDetector::new(classifier, &catalog, Some(llm(fake, timeout)))
}

#[tokio::test]
async fn a_valid_llm_answer_is_used_with_its_entities() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::json(json!({
        "intent": "scheduling",
        "confidence": 0.93,
        "entities": {"date": "Saturday", "project": "Skyline Heights"}
    })));
    let p = detector(&fake, Duration::from_secs(5))
        .detect("can I see Skyline Heights on Saturday?")
        .await;
    assert_eq!(p.source, PredictionSource::Llm);
    assert_eq!(p.intent.as_deref(), Some("scheduling"));
    assert_eq!(p.entities["project"], "Skyline Heights");
    assert!((p.confidence - 0.93).abs() < 1e-6);
}

#[tokio::test]
async fn the_request_carries_the_model_the_json_schema_and_the_bearer_key() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::json(
        json!({"intent": "pricing", "confidence": 0.8, "entities": {}}),
    ));
    detector(&fake, Duration::from_secs(5))
        .detect("price of 2bhk?")
        .await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.body["model"], "gpt-test-mini");
    assert_eq!(r.body["response_format"]["type"], "json_schema");
    let schema = &r.body["response_format"]["json_schema"]["schema"];
    let allowed = schema["properties"]["intent"]["enum"].as_array().unwrap();
    assert!(allowed.contains(&json!("pricing")) && allowed.contains(&json!("out_of_scope")));
    assert_eq!(
        schema["required"],
        json!(["intent", "confidence", "entities"])
    );
    let messages = r.body["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["content"], "price of 2bhk?");
}

#[tokio::test]
async fn a_malformed_llm_answer_falls_back_to_the_offline_classifier() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::content("Sure! The intent is pricing."));
    let p = detector(&fake, Duration::from_secs(5))
        .detect("what is the price of a 3bhk in baner")
        .await;
    assert_eq!(p.source, PredictionSource::OfflineFallback);
    assert_eq!(p.intent.as_deref(), Some("pricing"));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn an_intent_outside_the_catalogue_falls_back_to_the_offline_classifier() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::json(
        json!({"intent": "buy_car", "confidence": 0.99, "entities": {}}),
    ));
    let p = detector(&fake, Duration::from_secs(5))
        .detect("book a site visit for sunday")
        .await;
    assert_eq!(p.source, PredictionSource::OfflineFallback);
    assert_eq!(p.intent.as_deref(), Some("scheduling"));
}

#[tokio::test]
async fn a_rate_limited_llm_falls_back_at_once_without_retrying() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::RateLimited {
        retry_after_secs: 20,
    });
    let started = std::time::Instant::now();
    let p = detector(&fake, Duration::from_secs(5))
        .detect("please stop messaging me")
        .await;
    assert_eq!(p.source, PredictionSource::OfflineFallback);
    assert_eq!(p.intent.as_deref(), Some("opt_out"));
    assert_eq!(fake.requests().len(), 1, "a 429 is not retried");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_slow_llm_times_out_and_falls_back_to_the_offline_classifier() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::delayed(
        Duration::from_secs(5),
        ScriptedReply::json(json!({"intent": "greeting", "confidence": 1.0, "entities": {}})),
    ));
    let started = std::time::Instant::now();
    let p = detector(&fake, Duration::from_millis(300))
        .detect("I want to talk to a human agent")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.source, PredictionSource::OfflineFallback);
    assert_eq!(p.intent.as_deref(), Some("human_request"));
}

#[tokio::test]
async fn a_server_error_falls_back_to_the_offline_classifier() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::Status {
        status: 500,
        body: json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
    });
    let p = detector(&fake, Duration::from_secs(5))
        .detect("hello")
        .await;
    assert_eq!(p.source, PredictionSource::OfflineFallback);
    assert_eq!(p.intent.as_deref(), Some("greeting"));
}

#[tokio::test]
async fn an_llm_out_of_scope_answer_is_an_abstention_not_a_fallback() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(ScriptedReply::json(
        json!({"intent": "out_of_scope", "confidence": 0.9, "entities": {}}),
    ));
    let p = detector(&fake, Duration::from_secs(5))
        .detect("who won the match")
        .await;
    assert_eq!(p.source, PredictionSource::Llm);
    assert_eq!(p.intent, None);
    assert_eq!(p.best, "out_of_scope");
}

#[tokio::test]
async fn without_an_llm_the_offline_classifier_answers() {
    let (catalog, classifier) = trained();
    let detector = IntentDetector::new(classifier, &catalog, None);
    let p = detector.detect("send me the floor plan of the 3 bhk").await;
    assert_eq!(p.source, PredictionSource::Offline);
    assert_eq!(p.intent.as_deref(), Some("product_info"));
}

#[test]
fn a_prediction_serialises_its_source_in_snake_case() {
    let (_, classifier) = trained();
    let mut p = classifier.predict("hello");
    p.source = PredictionSource::OfflineFallback;
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["source"], "offline_fallback");
    assert_eq!(v["entities"], json!({}));
}

#[test]
fn a_malformed_catalogue_fails_with_the_file_name_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intents.toml");
    std::fs::write(&path, "[[intent]]\nname = \"pricing\"\nexamples = []\n[[intent]]\nname = \"b\"\nexamples = [\"x\"]\n").unwrap();
    let message = IntentCatalog::load(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}: intent \"pricing\" has no examples", path.display())
    );
}

// --- `parley eval intents` ---

use parley::cli::eval::{EvalCommand, IntentsArgs, evaluate_intents, run};

#[test]
fn eval_intents_scores_the_catalogue_on_the_demo_test_set_with_a_validated_threshold() {
    let args = IntentsArgs {
        train: None,
        test: repo_file("eval/intents_test.csv"),
        validation: Some(repo_file("eval/intents_validation.csv")),
        threshold: None,
        min_oos_recall: None,
        json: true,
    };
    let run = evaluate_intents(&args, &repo_file("prompts/intents.toml")).unwrap();
    let r = &run.report;
    assert!(
        run.threshold_source
            .starts_with("chosen on the validation set")
    );
    assert_eq!(run.examples, shipped_catalog().example_count());
    assert_eq!(r.in_scope_rows + r.oos_rows, 207);
    assert!(r.oos_rows >= 40);
    assert!((0.0..=1.0).contains(&r.metrics.threshold));
    assert!(r.metrics.accuracy >= 0.80, "{:?}", r.metrics);
    assert!(r.metrics.oos_recall >= 0.65, "{:?}", r.metrics);
    assert!(run.unknown_labels.is_empty(), "{:?}", run.unknown_labels);
}

#[test]
fn eval_intents_trains_on_a_csv_when_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.csv");
    let test = dir.path().join("test.csv");
    std::fs::write(
        &train,
        "text,label\nhow much is it,pricing\nwhat is the price,pricing\ncost of the flat,pricing\n\
         book a visit,scheduling\ncan i come on sunday,scheduling\nschedule a call,scheduling\n\
         tell me a joke about cats,oos\nwho won the match,oos\n",
    )
    .unwrap();
    std::fs::write(
        &test,
        "text,label\nwhat's the price,pricing\nvisit on sunday,scheduling\nfix my car,oos\n",
    )
    .unwrap();
    let args = IntentsArgs {
        train: Some(train.clone()),
        test,
        validation: None,
        threshold: None,
        min_oos_recall: None,
        json: false,
    };
    let run = evaluate_intents(&args, Path::new("/nonexistent/intents.toml")).unwrap();
    assert_eq!(run.examples, 8);
    assert_eq!(run.intents, 3);
    assert_eq!(run.source, train.display().to_string());
    assert_eq!(
        run.report.metrics.threshold,
        parley::llm::catalog::DEFAULT_THRESHOLD
    );
    assert_eq!(run.report.in_scope_rows, 2);
}

#[tokio::test]
async fn eval_intents_names_a_missing_test_file() {
    let cmd = EvalCommand::Intents(IntentsArgs {
        train: None,
        test: PathBuf::from("/nonexistent/test.csv"),
        validation: None,
        threshold: None,
        min_oos_recall: None,
        json: true,
    });
    let err = run(cmd, &repo_file("prompts/intents.toml"))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/test.csv"),
        "{err:#}"
    );
}

#[test]
fn eval_intents_scores_at_a_given_threshold_and_shows_the_trade_off() {
    let args = IntentsArgs {
        train: None,
        test: repo_file("eval/intents_test.csv"),
        validation: None,
        threshold: Some(0.0),
        min_oos_recall: None,
        json: false,
    };
    let run = evaluate_intents(&args, &repo_file("prompts/intents.toml")).unwrap();
    assert_eq!(run.threshold_source, "given with --threshold");
    assert_eq!(run.report.metrics.threshold, 0.0);
    // The first trade-off point is the same threshold, so the same figures.
    let (t, accuracy, oos_recall) = run.trade_off[0];
    assert_eq!(t, 0.0);
    assert_eq!(accuracy, run.report.metrics.accuracy);
    assert_eq!(oos_recall, run.report.metrics.oos_recall);
    // Abstaining more never finds fewer out-of-scope rows.
    for pair in run.trade_off.windows(2) {
        assert!(pair[0].0 < pair[1].0);
        assert!(pair[0].2 <= pair[1].2, "{:?}", run.trade_off);
    }
    assert!(
        run.trade_off.last().unwrap().2 > oos_recall,
        "{:?}",
        run.trade_off
    );
}

#[test]
fn eval_intents_can_choose_the_threshold_for_an_oos_recall_floor() {
    let at_floor = |floor: f32| {
        let args = IntentsArgs {
            train: None,
            test: repo_file("eval/intents_test.csv"),
            validation: Some(repo_file("eval/intents_validation.csv")),
            threshold: None,
            min_oos_recall: Some(floor),
            json: false,
        };
        evaluate_intents(&args, &repo_file("prompts/intents.toml")).unwrap()
    };
    let (low, high) = (at_floor(0.3), at_floor(0.9));
    assert!(low.threshold_source.contains("--min-oos-recall"));
    // Catching more out-of-scope messages never takes a lower threshold.
    assert!(
        high.report.metrics.threshold >= low.report.metrics.threshold,
        "{} < {}",
        high.report.metrics.threshold,
        low.report.metrics.threshold
    );
    assert!(high.report.metrics.oos_recall >= low.report.metrics.oos_recall);
}
