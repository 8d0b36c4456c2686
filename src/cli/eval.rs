//! `parley eval intents`: train the offline intent classifier and score it on labelled data
//! (DESIGN.md section 5; the metrics are defined in [`crate::llm::eval`]).
//!
//! Trains on `--train` (a `text,label` CSV) or, without it, on the intent catalogue; scores the
//! `--test` CSV, whose rows labelled `oos` are out of scope. With `--validation`, the abstention
//! threshold is the one that maximises in-scope accuracy + out-of-scope recall on that file;
//! otherwise it is the catalogue's (`threshold` in `prompts/intents.toml`, 0.5 for CSV training).
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
    /// Print only the metrics as a JSON object.
    #[arg(long)]
    pub json: bool,
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
    }
}

/// The whole of `parley eval intents`, synchronous (training is CPU-bound).
pub fn intents(args: &IntentsArgs, intents_path: &Path) -> anyhow::Result<()> {
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

    let examples = catalog.example_count();
    let started = Instant::now();
    let classifier = IntentClassifier::train(&catalog);
    let train_secs = started.elapsed().as_secs_f64();
    let oos_labels = catalog.out_of_scope_labels().to_vec();

    let threshold = match &validation {
        Some(rows) => eval::choose_threshold(&score(&classifier, rows), &oos_labels),
        None => catalog.threshold(),
    };
    let started = Instant::now();
    let scored = score(&classifier, &test);
    let predict_secs = started.elapsed().as_secs_f64();
    let report = eval::evaluate(&scored, &oos_labels, threshold);

    let training_line = format!(
        "trained on {examples} examples ({} intents, {} features) from {source} in {train_secs:.2} s ({:.0} examples/s)",
        catalog.names().count(),
        classifier.feature_count(),
        examples as f64 / train_secs.max(1e-9),
    );
    if args.json {
        eprintln!("{training_line}");
        println!("{}", serde_json::to_string(&report.metrics)?);
        return Ok(());
    }
    println!("{training_line}");
    let unknown = unknown_labels(&test, &catalog);
    if !unknown.is_empty() {
        println!(
            "warning: {} test label(s) never seen in training, always wrong: {}",
            unknown.len(),
            unknown.join(", ")
        );
    }
    print_report(
        &report,
        &args.test,
        scored.len(),
        predict_secs,
        validation.is_some(),
    );
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

fn print_report(report: &IntentReport, test: &Path, rows: usize, predict_secs: f64, tuned: bool) {
    let m = &report.metrics;
    println!(
        "scored {rows} rows of {} ({} in scope, {} oos) in {:.1} µs per message",
        test.display(),
        report.in_scope_rows,
        report.oos_rows,
        predict_secs * 1e6 / rows.max(1) as f64
    );
    println!(
        "threshold          {:.3} ({})",
        m.threshold,
        if tuned {
            "chosen on the validation set"
        } else {
            "from the catalogue"
        }
    );
    println!("in-scope accuracy  {:.4}", m.accuracy);
    println!("macro-F1           {:.4}", m.macro_f1);
    println!("oos recall         {:.4}", m.oos_recall);
    println!("oos precision      {:.4}", m.oos_precision);
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
