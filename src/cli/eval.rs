//! `parley eval intents`: train the offline intent classifier and score it on labelled data
//! (DESIGN.md section 5; the metrics are defined in [`crate::llm::eval`]).
//!
//! Trains on `--train` (a `text,label` CSV) or, without it, on the intent catalogue; scores the
//! `--test` CSV, whose rows labelled `oos` are out of scope. With `--validation`, the abstention
//! threshold is the one that maximises in-scope accuracy + out-of-scope recall on that file, or,
//! with `--min-oos-recall R`, the one with the best in-scope accuracy among those that catch at
//! least R of its out-of-scope rows; otherwise it is the catalogue's (`threshold` in
//! `prompts/intents.toml`, 0.5 for CSV training).
//! `--json` prints only `{"accuracy", "macro_f1", "oos_recall", "oos_precision", "threshold"}`
//! on standard output (training time goes to standard error).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::llm::eval::{self, IntentReport, OOS_LABEL, ScoredRow};
use crate::llm::{IntentCatalog, IntentClassifier, LabeledText};

/// Evaluation subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// Train the offline intent classifier and report accuracy, macro-F1 and out-of-scope
    /// recall and precision on a labelled test set.
    Intents(IntentsArgs),
    /// Ingest a folder into a temporary knowledge base and report recall@1, recall@5 and MRR
    /// on labelled questions.
    Retrieval(super::eval_retrieval::RetrievalArgs),
    /// Run scripted conversations through the pipeline (offline brain, or the model when
    /// OPENAI_API_KEY is set) and report the pass rate and the handoff rates on answerable and
    /// unanswerable questions.
    Agents(super::eval_agents::AgentsArgs),
}

#[derive(Debug, clap::Args)]
pub struct IntentsArgs {
    /// Training data, a CSV with columns text,label (default: the intent catalogue).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Test data, a CSV with columns text,label; label `oos` marks out-of-scope rows.
    #[arg(long)]
    pub test: PathBuf,
    /// Validation data (same format) on which to choose the abstention threshold.
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// Abstain below this confidence instead of the catalogue's threshold or one chosen on
    /// --validation (to try the value you mean to configure).
    #[arg(long, conflicts_with = "validation", value_parser = parse_threshold)]
    pub threshold: Option<f32>,
    /// With --validation: choose the threshold with the best in-scope accuracy among those whose
    /// out-of-scope recall on the validation set is at least this (0..1), instead of maximising
    /// accuracy + recall.
    #[arg(long, requires = "validation", value_parser = parse_threshold)]
    pub min_oos_recall: Option<f32>,
    /// Print only the metrics as a JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_threshold(raw: &str) -> Result<f32, String> {
    match raw.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(format!("`{raw}` is not a confidence between 0 and 1")),
    }
}

/// Runs an evaluation; `intents_path` is the catalogue used when `--train` is absent.
pub async fn run(cmd: EvalCommand, intents_path: &Path) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Intents(args) => {
            let intents_path = intents_path.to_path_buf();
            tokio::task::spawn_blocking(move || intents(&args, &intents_path))
                .await
                .context("the evaluation task panicked")?
        }
        EvalCommand::Retrieval(args) => super::eval_retrieval::run(args).await,
        EvalCommand::Agents(args) => super::eval_agents::run(args).await,
    }
}

/// Thresholds at which the text report shows what abstaining more or less would give.
const TRADE_OFF_THRESHOLDS: [f32; 10] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// What one `parley eval intents` run measured.
#[derive(Debug, Clone)]
pub struct IntentsRun {
    pub report: IntentReport,
    /// Where the training data came from (a CSV file or the catalogue).
    pub source: String,
    pub examples: usize,
    pub intents: usize,
    pub features: usize,
    pub train_secs: f64,
    /// Mean time to classify one test message.
    pub predict_secs_per_message: f64,
    /// Where the threshold came from, as printed.
    pub threshold_source: &'static str,
    /// In-scope accuracy and out-of-scope recall on the test set at other thresholds:
    /// (threshold, accuracy, oos recall).
    pub trade_off: Vec<(f32, f64, f64)>,
    /// In-scope test labels the classifier was never trained on.
    pub unknown_labels: Vec<String>,
}

impl IntentsRun {
    fn training_line(&self) -> String {
        format!(
            "trained on {} examples ({} intents, {} features) from {} in {:.2} s ({:.0} examples/s)",
            self.examples,
            self.intents,
            self.features,
            self.source,
            self.train_secs,
            self.examples as f64 / self.train_secs.max(1e-9),
        )
    }
}

/// Trains and scores as `parley eval intents` does, without printing.
pub fn evaluate_intents(args: &IntentsArgs, intents_path: &Path) -> anyhow::Result<IntentsRun> {
    let (catalog, source) = match &args.train {
        Some(path) => (
            IntentCatalog::from_labeled(eval::read_labeled_csv(path)?),
            path.display().to_string(),
        ),
        None => (
            IntentCatalog::load(intents_path)?,
            intents_path.display().to_string(),
        ),
    };
    let test = eval::read_labeled_csv(&args.test)?;
    let validation = args
        .validation
        .as_deref()
        .map(eval::read_labeled_csv)
        .transpose()?;

    let started = Instant::now();
    let classifier = IntentClassifier::train(&catalog);
    let train_secs = started.elapsed().as_secs_f64();
    let oos_labels = catalog.out_of_scope_labels().to_vec();

    let (threshold, threshold_source) = match (&validation, args.threshold) {
        (Some(rows), _) => {
            let validated = score(&classifier, rows);
            match args.min_oos_recall {
                Some(min_recall) => (
                    eval::choose_threshold_for_recall(&validated, &oos_labels, f64::from(min_recall))
                        .with_context(|| {
                            format!(
                                "no threshold reaches an oos recall of {min_recall} on the validation set"
                            )
                        })?,
                    "chosen on the validation set: best in-scope accuracy at --min-oos-recall",
                ),
                None => (
                    eval::choose_threshold(&validated, &oos_labels),
                    "chosen on the validation set: max in-scope accuracy + oos recall",
                ),
            }
        }
        (None, Some(given)) => (given, "given with --threshold"),
        (None, None) => (catalog.threshold(), "from the catalogue"),
    };
    let started = Instant::now();
    let scored = score(&classifier, &test);
    let predict_secs_per_message = started.elapsed().as_secs_f64() / scored.len().max(1) as f64;
    Ok(IntentsRun {
        report: eval::evaluate(&scored, &oos_labels, threshold),
        source,
        examples: catalog.example_count(),
        intents: catalog.names().count(),
        features: classifier.feature_count(),
        train_secs,
        predict_secs_per_message,
        trade_off: TRADE_OFF_THRESHOLDS
            .iter()
            .map(|t| {
                let m = eval::evaluate(&scored, &oos_labels, *t).metrics;
                (*t, m.accuracy, m.oos_recall)
            })
            .collect(),
        threshold_source,
        unknown_labels: unknown_labels(&test, &catalog),
    })
}

/// The whole of `parley eval intents`, synchronous (training is CPU-bound).
pub fn intents(args: &IntentsArgs, intents_path: &Path) -> anyhow::Result<()> {
    let run = evaluate_intents(args, intents_path)?;
    if args.json {
        eprintln!("{}", run.training_line());
        println!("{}", serde_json::to_string(&run.report.metrics)?);
        return Ok(());
    }
    println!("{}", run.training_line());
    if !run.unknown_labels.is_empty() {
        println!(
            "warning: {} test label(s) never seen in training, always wrong: {}",
            run.unknown_labels.len(),
            run.unknown_labels.join(", ")
        );
    }
    print_report(&run, &args.test);
    Ok(())
}

fn score(classifier: &IntentClassifier, rows: &[LabeledText]) -> Vec<ScoredRow> {
    rows.iter()
        .map(|row| {
            let p = classifier.predict_with_threshold(&row.text, 0.0);
            ScoredRow {
                gold: row.label.clone(),
                best: p.best,
                confidence: p.confidence,
            }
        })
        .collect()
}

fn unknown_labels(test: &[LabeledText], catalog: &IntentCatalog) -> Vec<String> {
    let mut unknown: Vec<String> = test
        .iter()
        .map(|r| r.label.as_str())
        .filter(|l| *l != OOS_LABEL && !catalog.contains(l))
        .map(str::to_string)
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

fn print_report(run: &IntentsRun, test: &Path) {
    let report = &run.report;
    let m = &report.metrics;
    println!(
        "scored {} rows of {} ({} in scope, {} oos) in {:.1} µs per message",
        report.in_scope_rows + report.oos_rows,
        test.display(),
        report.in_scope_rows,
        report.oos_rows,
        run.predict_secs_per_message * 1e6
    );
    println!(
        "threshold          {:.3} ({})",
        m.threshold, run.threshold_source
    );
    println!("in-scope accuracy  {:.4}", m.accuracy);
    println!("macro-F1           {:.4}", m.macro_f1);
    println!("oos recall         {:.4}", m.oos_recall);
    println!("oos precision      {:.4}", m.oos_precision);
    if report.oos_rows > 0 {
        println!("at other thresholds (in-scope accuracy / oos recall):");
        for (threshold, accuracy, oos_recall) in &run.trade_off {
            println!("  {threshold:.1}  {accuracy:.4} / {oos_recall:.4}");
        }
    }
    if report.confusions.is_empty() {
        println!("no confusions");
        return;
    }
    println!("most frequent confusions (gold -> predicted: count):");
    for (gold, predicted, n) in report.confusions.iter().take(10) {
        println!("  {gold} -> {predicted}: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_output_has_exactly_the_documented_keys() {
        let report = eval::evaluate(&[], &[], 0.5);
        let value = serde_json::to_value(&report.metrics).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "accuracy",
                "macro_f1",
                "oos_precision",
                "oos_recall",
                "threshold"
            ]
        );
    }
}
