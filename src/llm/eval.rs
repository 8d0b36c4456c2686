//! Scoring the intent classifier on labelled data (`parley eval intents`, DESIGN.md section 5).
//!
//! Test rows labelled [`OOS_LABEL`] are out of scope. A prediction counts as `oos` when the
//! classifier abstains (confidence below the threshold) or its best label is one of the
//! catalogue's out-of-scope intents (such as `other`). Then:
//! - accuracy: the share of in-scope rows whose prediction is their label (an abstention on an
//!   in-scope row is wrong);
//! - macro-F1: the mean, over the in-scope labels present in the test set, of
//!   `2TP / (2TP + FP + FN)`, where a false positive may come from an `oos` row;
//! - out-of-scope recall: the share of `oos` rows predicted `oos`; precision: the share of rows
//!   predicted `oos` that are `oos`. Undefined ratios (no such rows) are reported as 0.
//!
//! [`choose_threshold`] picks the threshold on a validation set by maximising in-scope accuracy
//! plus out-of-scope recall (each group weighs the same however many rows it has), the smallest
//! such threshold winning ties.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, anyhow};
use serde::Serialize;

use super::catalog::LabeledText;

/// The label of out-of-scope rows in evaluation files.
pub const OOS_LABEL: &str = "oos";

/// One evaluated row: its gold label, the classifier's best label and confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRow {
    pub gold: String,
    pub best: String,
    pub confidence: f32,
}

/// The figures `parley eval intents --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntentMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub oos_recall: f64,
    pub oos_precision: f64,
    pub threshold: f32,
}

/// Metrics plus the counts and confusions behind them, for the human-readable report.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentReport {
    pub metrics: IntentMetrics,
    pub in_scope_rows: usize,
    pub oos_rows: usize,
    /// (gold, predicted, count) for wrong predictions, most frequent first.
    pub confusions: Vec<(String, String, usize)>,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// The label a row is predicted as at `threshold`: its best label, or [`OOS_LABEL`].
pub fn predicted_label<'a>(row: &'a ScoredRow, out_of_scope: &[String], threshold: f32) -> &'a str {
    if row.confidence < threshold || row.confidence <= 0.0 || out_of_scope.contains(&row.best) {
        OOS_LABEL
    } else {
        &row.best
    }
}

/// Scores `rows` at `threshold`; `out_of_scope` are the intents that count as predicting `oos`.
pub fn evaluate(rows: &[ScoredRow], out_of_scope: &[String], threshold: f32) -> IntentReport {
    let mut correct = 0;
    let (mut in_scope_rows, mut oos_rows) = (0, 0);
    let (mut oos_hits, mut predicted_oos) = (0, 0);
    let mut tp: HashMap<&str, usize> = HashMap::new();
    let mut fp: HashMap<&str, usize> = HashMap::new();
    let mut fn_: HashMap<&str, usize> = HashMap::new();
    let mut gold_labels: BTreeSet<&str> = BTreeSet::new();
    let mut confusions: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for row in rows {
        let predicted = predicted_label(row, out_of_scope, threshold);
        let gold = row.gold.as_str();
        let gold_oos = gold == OOS_LABEL;
        if predicted == OOS_LABEL {
            predicted_oos += 1;
        }
        if gold_oos {
            oos_rows += 1;
            if predicted == OOS_LABEL {
                oos_hits += 1;
            }
        } else {
            in_scope_rows += 1;
            gold_labels.insert(gold);
            if predicted == gold {
                correct += 1;
                *tp.entry(gold).or_default() += 1;
            } else {
                *fn_.entry(gold).or_default() += 1;
            }
        }
        if predicted != gold {
            if predicted != OOS_LABEL {
                *fp.entry(predicted).or_default() += 1;
            }
            *confusions.entry((gold, predicted)).or_default() += 1;
        }
    }
    let f1s = gold_labels.iter().map(|label| {
        let tp = tp.get(label).copied().unwrap_or(0);
        let den =
            2 * tp + fp.get(label).copied().unwrap_or(0) + fn_.get(label).copied().unwrap_or(0);
        ratio(2 * tp, den)
    });
    let macro_f1 = if gold_labels.is_empty() {
        0.0
    } else {
        f1s.sum::<f64>() / gold_labels.len() as f64
    };
    let mut confusions: Vec<(String, String, usize)> = confusions
        .into_iter()
        .map(|((g, p), n)| (g.to_string(), p.to_string(), n))
        .collect();
    confusions.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    IntentReport {
        metrics: IntentMetrics {
            accuracy: ratio(correct, in_scope_rows),
            macro_f1,
            oos_recall: ratio(oos_hits, oos_rows),
            oos_precision: ratio(oos_hits, predicted_oos),
            threshold,
        },
        in_scope_rows,
        oos_rows,
        confusions,
    }
}

/// The threshold in 0, 0.005, ..., 1 that maximises in-scope accuracy + out-of-scope recall on
/// `rows` (the smallest one on ties).
pub fn choose_threshold(rows: &[ScoredRow], out_of_scope: &[String]) -> f32 {
    let mut best = (f64::NEG_INFINITY, 0.0f32);
    for step in 0..=200 {
        let threshold = step as f32 / 200.0;
        let m = evaluate(rows, out_of_scope, threshold).metrics;
        let score = m.accuracy + m.oos_recall;
        if score > best.0 + 1e-12 {
            best = (score, threshold);
        }
    }
    best.1
}

/// The threshold (in steps of 0.005) with the best in-scope accuracy among those whose
/// out-of-scope recall on `rows` is at least `min_recall`; the lowest such on a tie. `None` when
/// no threshold catches that many (or `rows` has no out-of-scope row).
pub fn choose_threshold_for_recall(
    rows: &[ScoredRow],
    out_of_scope: &[String],
    min_recall: f64,
) -> Option<f32> {
    let mut best: Option<(f64, f32)> = None;
    for step in 0..=200 {
        let threshold = step as f32 / 200.0;
        let report = evaluate(rows, out_of_scope, threshold);
        if report.oos_rows == 0 || report.metrics.oos_recall < min_recall {
            continue;
        }
        if best.is_none_or(|(accuracy, _)| report.metrics.accuracy > accuracy + 1e-12) {
            best = Some((report.metrics.accuracy, threshold));
        }
    }
    best.map(|(_, threshold)| threshold)
}

/// Reads a `text,label` CSV file with a header row; fails naming the file and the row.
pub fn read_labeled_csv(path: &Path) -> anyhow::Result<Vec<LabeledText>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("{}: cannot be read", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: has no header row", path.display()))?
        .clone();
    if !headers.iter().any(|h| h == "text") || !headers.iter().any(|h| h == "label") {
        return Err(anyhow!(
            "{}: the header row must name the columns text and label",
            path.display()
        ));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.deserialize::<LabeledText>().enumerate() {
        let row = record.map_err(|e| anyhow!("{}: row {}: {e}", path.display(), i + 2))?;
        if row.label.is_empty() {
            return Err(anyhow!("{}: row {} has no label", path.display(), i + 2));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(anyhow!("{}: has no rows", path.display()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gold: &str, best: &str, confidence: f32) -> ScoredRow {
        ScoredRow {
            gold: gold.into(),
            best: best.into(),
            confidence,
        }
    }

    fn other() -> Vec<String> {
        vec!["other".to_string()]
    }

    /// Six rows worked by hand at threshold 0.5:
    /// a->a, a->b, b->b, b->(0.3: abstain = oos), oos->(0.2: oos), oos->a (0.9).
    fn rows() -> Vec<ScoredRow> {
        vec![
            row("a", "a", 0.9),
            row("a", "b", 0.8),
            row("b", "b", 0.7),
            row("b", "b", 0.3),
            row("oos", "a", 0.2),
            row("oos", "a", 0.9),
        ]
    }

    #[test]
    fn metrics_match_a_hand_computed_example() {
        let r = evaluate(&rows(), &other(), 0.5);
        // in scope: 2 of 4 right.
        assert_eq!(r.metrics.accuracy, 0.5);
        // a: tp 1, fp 1 (the oos row), fn 1 -> 2/4; b: tp 1, fp 1, fn 1 -> 2/4.
        assert!((r.metrics.macro_f1 - 0.5).abs() < 1e-12);
        // oos: 1 of 2 caught; 2 predicted oos (b@0.3 and oos@0.2), 1 right.
        assert_eq!(r.metrics.oos_recall, 0.5);
        assert_eq!(r.metrics.oos_precision, 0.5);
        assert_eq!((r.in_scope_rows, r.oos_rows), (4, 2));
        assert_eq!(r.confusions.len(), 3);
        assert!(r.confusions.contains(&("b".into(), "oos".into(), 1)));
    }

    #[test]
    fn an_out_of_scope_intent_counts_as_predicting_oos() {
        let r = evaluate(
            &[row("oos", "other", 0.99), row("a", "other", 0.99)],
            &other(),
            0.5,
        );
        assert_eq!(r.metrics.oos_recall, 1.0);
        assert_eq!(r.metrics.oos_precision, 0.5);
        assert_eq!(r.metrics.accuracy, 0.0);
    }

    #[test]
    fn undefined_ratios_are_zero() {
        let r = evaluate(&[row("a", "a", 0.9)], &other(), 0.5);
        assert_eq!((r.metrics.oos_recall, r.metrics.oos_precision), (0.0, 0.0));
        assert_eq!(r.metrics.accuracy, 1.0);
        assert_eq!(r.metrics.macro_f1, 1.0);
    }

    #[test]
    fn the_chosen_threshold_separates_confident_in_scope_rows_from_oos_rows() {
        let rows = vec![
            row("a", "a", 0.9),
            row("b", "b", 0.8),
            row("oos", "a", 0.4),
            row("oos", "b", 0.6),
        ];
        let t = choose_threshold(&rows, &other());
        // Any t in (0.6, 0.8] gets accuracy 1 and recall 1; the smallest grid point is 0.605.
        assert!((t - 0.605).abs() < 1e-6, "{t}");
        let m = evaluate(&rows, &other(), t).metrics;
        assert_eq!((m.accuracy, m.oos_recall), (1.0, 1.0));
    }

    #[test]
    fn a_recall_floor_keeps_the_most_accurate_threshold_that_reaches_it() {
        let rows = vec![
            row("a", "a", 0.9),
            row("b", "b", 0.5),
            row("oos", "a", 0.3),
            row("oos", "b", 0.7),
        ];
        // Half the oos rows are caught from 0.305 on, with both in-scope rows still answered
        // (up to 0.5); catching both costs row b from 0.705 on.
        let half = choose_threshold_for_recall(&rows, &other(), 0.5).unwrap();
        assert!((half - 0.305).abs() < 1e-6, "{half}");
        let all = choose_threshold_for_recall(&rows, &other(), 1.0).unwrap();
        assert!((all - 0.705).abs() < 1e-6, "{all}");
        assert_eq!(evaluate(&rows, &other(), all).metrics.accuracy, 0.5);
        let no_oos = [row("a", "a", 0.9)];
        assert_eq!(choose_threshold_for_recall(&no_oos, &other(), 0.1), None);
    }

    #[test]
    fn csv_rows_are_read_with_their_header_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "text,label\n\"hi, there\",greeting\nweather?,oos\n").unwrap();
        let rows = read_labeled_csv(&good).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "hi, there");
        assert_eq!(rows[1].label, "oos");
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "utterance,intent\nhi,greeting\n").unwrap();
        let err = read_labeled_csv(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.csv") && err.contains("text and label"),
            "{err}"
        );
    }
}
