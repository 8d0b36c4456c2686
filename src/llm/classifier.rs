//! The offline intent classifier: TF-IDF and static word-piece embedding features
//! ([`super::features`]) and a multinomial logistic regression trained at start-up from the
//! catalogue's examples.
//!
//! The model is trained by stochastic gradient descent on the L2-regularised cross-entropy,
//! with a linearly decaying learning rate and the usual "scaled weights" trick so that the
//! regularisation shrink costs O(1) per example rather than O(features x classes). Weights are
//! stored feature-major (`[feature][class]`), so both the forward pass and the update of one
//! example are a few hundred contiguous, vectorisable AXPYs over the classes. Training is
//! deterministic (fixed shuffling seed).
//!
//! The softmax probability of the top class is the confidence; the classifier abstains below
//! the catalogue's threshold, and also when the top class is an out-of-scope intent.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::catalog::IntentCatalog;
use super::features::{FeatureConfig, SparseVector, Vectorizer};
use super::prediction::{IntentPrediction, PredictionSource};

/// How to train: features and optimiser settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub features: FeatureConfig,
    /// Passes over the training examples.
    pub epochs: usize,
    /// L2 penalty per example (the objective is mean cross-entropy + l2/2 * |W|^2).
    pub l2: f32,
    /// Initial learning rate; it decays linearly to 5% of this over the training.
    pub learning_rate: f32,
    /// Seed for the example order.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            features: FeatureConfig::default(),
            epochs: 15,
            l2: 1e-5,
            learning_rate: 1.0,
            seed: 0x5eed,
        }
    }
}

impl TrainConfig {
    /// The defaults, adjusted to the amount of data: with thousands of examples, features seen
    /// once are mostly noise and cost memory, so they are dropped, and fewer passes suffice
    /// (training time is dominated by fetching weight rows from memory).
    pub fn for_examples(n: usize) -> Self {
        let mut config = Self::default();
        if n >= 5_000 {
            config.features.min_df = 2;
            config.epochs = 10;
        }
        config
    }
}

/// Gradients (per logit) below this are not applied.
const SKIP_GRADIENT: f32 = 1e-3;

/// Softmax regression weights.
#[derive(Debug, Clone)]
struct SoftmaxModel {
    classes: usize,
    /// `[feature][class]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl SoftmaxModel {
    fn logits(&self, x: &SparseVector, out: &mut [f32]) {
        out.copy_from_slice(&self.bias);
        for &(f, v) in x {
            let row = &self.weights[f as usize * self.classes..][..self.classes];
            axpy(v, row, out);
        }
    }

    /// Trains with 8-wide AVX2 arithmetic when the CPU has it (the same results: only the
    /// vector width changes, no operation is fused or reordered).
    fn train(
        dim: usize,
        classes: usize,
        xs: &[SparseVector],
        ys: &[usize],
        config: &TrainConfig,
    ) -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { train_avx2(dim, classes, xs, ys, config) };
        }
        train_sgd(dim, classes, xs, ys, config)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn train_avx2(
    dim: usize,
    classes: usize,
    xs: &[SparseVector],
    ys: &[usize],
    config: &TrainConfig,
) -> SoftmaxModel {
    train_sgd(dim, classes, xs, ys, config)
}

/// SGD on the L2-regularised cross-entropy; inlined into each instruction-set variant.
#[inline(always)]
fn train_sgd(
    dim: usize,
    classes: usize,
    xs: &[SparseVector],
    ys: &[usize],
    config: &TrainConfig,
) -> SoftmaxModel {
    let k = classes;
    let mut w = vec![0f32; dim * k];
    let mut bias = vec![0f32; k];
    // True weights are `scale * w`; shrinking for L2 only touches `scale`.
    let mut scale = 1f32;
    let mut order: Vec<usize> = (0..xs.len()).collect();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let total = (config.epochs * xs.len()).max(1) as f32;
    let mut z = vec![0f32; k];
    let mut step = 0usize;
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for &i in &order {
            let progress = step as f32 / total;
            let lr = config.learning_rate * (1.0 - 0.95 * progress);
            step += 1;
            let x = &xs[i];
            z.copy_from_slice(&bias);
            for &(f, v) in x {
                axpy(scale * v, &w[f as usize * k..][..k], &mut z);
            }
            softmax(&mut z);
            z[ys[i]] -= 1.0; // now the gradient of the loss w.r.t. the logits
            scale *= 1.0 - lr * config.l2;
            // An example the model already gets right with near-certainty would move no
            // weight measurably: skip its update (most of them, after the first epochs).
            if z.iter().all(|g| g.abs() < SKIP_GRADIENT) {
                continue;
            }
            let step_scale = -lr / scale;
            for &(f, v) in x {
                axpy(step_scale * v, &z, &mut w[f as usize * k..][..k]);
            }
            axpy(-lr, &z, &mut bias);
            if scale < 1e-4 {
                w.iter_mut().for_each(|x| *x *= scale);
                scale = 1.0;
            }
        }
    }
    w.iter_mut().for_each(|x| *x *= scale);
    SoftmaxModel {
        classes,
        weights: w,
        bias,
    }
}

/// `y += a * x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// In-place softmax, stable against large logits.
fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// A trained offline classifier.
#[derive(Debug, Clone)]
pub struct IntentClassifier {
    vectorizer: Vectorizer,
    model: SoftmaxModel,
    labels: Vec<String>,
    out_of_scope: Vec<bool>,
    threshold: f32,
}

impl IntentClassifier {
    /// Trains on every example of the catalogue, with settings suited to its size.
    pub fn train(catalog: &IntentCatalog) -> Self {
        Self::train_with(catalog, &TrainConfig::for_examples(catalog.example_count()))
    }

    /// Trains with explicit settings (for evaluation and tuning).
    pub fn train_with(catalog: &IntentCatalog, config: &TrainConfig) -> Self {
        let labels: Vec<String> = catalog.names().map(str::to_string).collect();
        let mut texts: Vec<&str> = Vec::with_capacity(catalog.example_count());
        let mut ys = Vec::with_capacity(catalog.example_count());
        for (class, intent) in catalog.intents().iter().enumerate() {
            for example in &intent.examples {
                texts.push(example);
                ys.push(class);
            }
        }
        let vectorizer = Vectorizer::fit(config.features.clone(), &texts);
        let xs: Vec<SparseVector> = texts.iter().map(|t| vectorizer.transform(t)).collect();
        let model = SoftmaxModel::train(vectorizer.dimension(), labels.len(), &xs, &ys, config);
        let out_of_scope = labels.iter().map(|l| catalog.is_out_of_scope(l)).collect();
        tracing::debug!(
            intents = labels.len(),
            examples = xs.len(),
            features = vectorizer.dimension(),
            "trained the offline intent classifier"
        );
        Self {
            vectorizer,
            model,
            labels,
            out_of_scope,
            threshold: catalog.threshold(),
        }
    }

    /// Classifies one message with the catalogue's threshold.
    pub fn predict(&self, text: &str) -> IntentPrediction {
        self.predict_with_threshold(text, self.threshold)
    }

    /// Classifies one message, abstaining below `threshold`. A message with no known word or
    /// character n-gram gets confidence 0 (it always abstains).
    pub fn predict_with_threshold(&self, text: &str, threshold: f32) -> IntentPrediction {
        let x = self.vectorizer.transform(text);
        let mut p = vec![0f32; self.model.classes];
        self.model.logits(&x, &mut p);
        softmax(&mut p);
        let (mut first, mut second) = (0usize, usize::MAX);
        for k in 1..p.len() {
            if p[k] > p[first] {
                second = first;
                first = k;
            } else if second == usize::MAX || p[k] > p[second] {
                second = k;
            }
        }
        let confidence = if x.is_empty() { 0.0 } else { p[first] };
        let in_scope = !self.out_of_scope[first] && confidence >= threshold && confidence > 0.0;
        IntentPrediction {
            intent: in_scope.then(|| self.labels[first].clone()),
            best: self.labels[first].clone(),
            confidence,
            runner_up: (second != usize::MAX).then(|| (self.labels[second].clone(), p[second])),
            entities: serde_json::json!({}),
            source: PredictionSource::Offline,
        }
    }

    /// The abstention threshold taken from the catalogue.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The labels the classifier can answer, in catalogue order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether `label` is an out-of-scope intent of the catalogue it was trained on.
    pub fn is_out_of_scope(&self, label: &str) -> bool {
        self.labels
            .iter()
            .zip(&self.out_of_scope)
            .any(|(l, oos)| *oos && l == label)
    }

    /// Number of TF-IDF features.
    pub fn feature_count(&self) -> usize {
        self.vectorizer.dimension()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::catalog::LabeledText;

    fn catalog() -> IntentCatalog {
        let rows = [
            ("how much does the flat cost", "pricing"),
            ("what is the price of a 2bhk", "pricing"),
            ("price list please", "pricing"),
            ("rate kya hai", "pricing"),
            ("book a site visit tomorrow", "scheduling"),
            ("can i visit the site on sunday", "scheduling"),
            ("schedule a call for monday", "scheduling"),
            ("set up a meeting", "scheduling"),
            ("hello", "greeting"),
            ("hi there", "greeting"),
            ("good morning", "greeting"),
            ("hey", "greeting"),
            ("who won the cricket match", "oos"),
            ("write me a poem", "oos"),
        ];
        IntentCatalog::from_labeled(
            rows.iter()
                .map(|(t, l)| LabeledText {
                    text: t.to_string(),
                    label: l.to_string(),
                })
                .collect(),
        )
        .with_threshold(0.4)
    }

    #[test]
    fn softmax_sums_to_one_and_survives_huge_logits() {
        let mut z = [1000.0, 1000.0, -1000.0];
        softmax(&mut z);
        assert!((z.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((z[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_trained_classifier_recovers_its_training_intents() {
        let clf = IntentClassifier::train(&catalog());
        for (text, label) in [
            ("price of a 2bhk", "pricing"),
            ("book a visit", "scheduling"),
            ("hello there", "greeting"),
        ] {
            let p = clf.predict(text);
            assert_eq!(p.best, label, "{text}: {p:?}");
            assert_eq!(p.intent.as_deref(), Some(label), "{text}: {p:?}");
            assert!(p.confidence > 0.4 && p.confidence <= 1.0);
            let (runner, second) = p.runner_up.unwrap();
            assert_ne!(runner, label);
            assert!(second <= p.confidence);
        }
    }

    #[test]
    fn an_out_of_scope_best_label_is_an_abstention() {
        let clf = IntentClassifier::train(&catalog());
        let p = clf.predict_with_threshold("who won the cricket match", 0.0);
        assert_eq!(p.best, "oos");
        assert_eq!(p.intent, None);
    }

    #[test]
    fn text_with_no_known_ngram_abstains_with_zero_confidence() {
        let clf = IntentClassifier::train(&catalog());
        let p = clf.predict("¿¿ ??");
        assert_eq!(p.intent, None);
        assert_eq!(p.confidence, 0.0);
    }

    #[test]
    fn a_threshold_above_the_confidence_makes_it_abstain() {
        let clf = IntentClassifier::train(&catalog());
        let p = clf.predict_with_threshold("price list please", 1.0);
        assert_eq!(p.best, "pricing");
        assert_eq!(p.intent, None);
    }

    #[test]
    fn training_is_deterministic() {
        let a = IntentClassifier::train(&catalog()).predict("visit price");
        let b = IntentClassifier::train(&catalog()).predict("visit price");
        assert_eq!(a, b);
    }
}
