//! Classification metrics, computed as scikit-learn computes them (the paper's notebooks used
//! sklearn, less-is-more.md §4.1): accuracy, ROC AUC (binary on P(class 1); multi-class the
//! macro one-vs-rest mean), F1, precision and recall (binary for two classes, else macro, with
//! `zero_division=0`), the confusion matrix, the ROC curve, and a bootstrap interval for the
//! AUC. `tests/eval_metrics.rs` holds them to sklearn's values on committed goldens.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// How F1, precision and recall are averaged over the classes, as sklearn's `average`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// Of class 1 against class 0.
    Binary,
    /// The unweighted mean over the classes.
    Macro,
}

/// Everything measured on one split's predictions.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    /// `None` where it is undefined: a split without both classes (binary), or without any
    /// class's positives and negatives (multi-class).
    pub auc: Option<f64>,
    /// The bootstrap 95 % interval of the AUC (percentiles 2.5 and 97.5).
    pub auc_ci95: Option<[f64; 2]>,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub average: Average,
    /// `confusion[true][predicted]`, as sklearn's `confusion_matrix`.
    pub confusion: Vec<Vec<usize>>,
}

/// Resamples of the bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

impl Metrics {
    /// The metrics of `probabilities` (`[n, classes]`, row-major) against `labels`; the
    /// prediction is the first most probable class (numpy's `argmax`). The bootstrap interval
    /// is seeded by `seed`.
    pub fn compute(labels: &[usize], probabilities: &[f64], classes: usize, seed: u64) -> Metrics {
        assert_eq!(labels.len() * classes, probabilities.len());
        let n = labels.len();
        let predicted: Vec<usize> = probabilities.chunks(classes).map(argmax).collect();
        let mut confusion = vec![vec![0; classes]; classes];
        for (&y, &p) in labels.iter().zip(&predicted) {
            confusion[y][p] += 1;
        }
        let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
        let (average, (precision, recall, f1)) = if classes == 2 {
            (Average::Binary, class_scores(&confusion, 1))
        } else {
            let per: Vec<_> = (0..classes).map(|c| class_scores(&confusion, c)).collect();
            let mean =
                |f: fn(&(f64, f64, f64)) -> f64| per.iter().map(f).sum::<f64>() / classes as f64;
            (
                Average::Macro,
                (mean(|s| s.0), mean(|s| s.1), mean(|s| s.2)),
            )
        };
        Metrics {
            n,
            accuracy: correct as f64 / n as f64,
            auc: auc(labels, probabilities, classes),
            auc_ci95: bootstrap_auc(labels, probabilities, classes, BOOTSTRAP_RESAMPLES, seed),
            f1,
            precision,
            recall,
            average,
            confusion,
        }
    }
}

/// The fraction of rows of `scores` (`[n, classes]`: probabilities or logits) whose first
/// largest value is at the label; 0 without rows.
pub fn accuracy(labels: &[usize], scores: &[f64], classes: usize) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let correct = scores
        .chunks(classes)
        .zip(labels)
        .filter(|(row, y)| argmax(row) == **y)
        .count();
    correct as f64 / labels.len() as f64
}

/// The index of the first largest value.
pub fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Precision, recall and F1 of class `c`, 0 where a denominator is 0.
fn class_scores(confusion: &[Vec<usize>], c: usize) -> (f64, f64, f64) {
    let tp = confusion[c][c] as f64;
    let predicted: usize = confusion.iter().map(|row| row[c]).sum();
    let actual: usize = confusion[c].iter().sum();
    let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    let (precision, recall) = (ratio(tp, predicted), ratio(tp, actual));
    // sklearn's F1 is 2 tp / (2 tp + fp + fn), 0 when that is 0 / 0.
    (precision, recall, ratio(2.0 * tp, predicted + actual))
}

/// The ROC AUC of `probabilities` as the paper took it: binary on P(class 1), multi-class the
/// macro mean of each class's one-vs-rest AUC over the classes where it is defined.
pub fn auc(labels: &[usize], probabilities: &[f64], classes: usize) -> Option<f64> {
    let column = |c: usize| -> (Vec<bool>, Vec<f64>) {
        let positive = labels.iter().map(|&y| y == c).collect();
        let scores = probabilities.chunks(classes).map(|p| p[c]).collect();
        (positive, scores)
    };
    if classes == 2 {
        let (positive, scores) = column(1);
        return roc_auc(&positive, &scores);
    }
    let per: Vec<f64> = (0..classes)
        .filter_map(|c| {
            let (positive, scores) = column(c);
            roc_auc(&positive, &scores)
        })
        .collect();
    (!per.is_empty()).then(|| per.iter().sum::<f64>() / per.len() as f64)
}

/// The area under the ROC curve of `scores` for the `positive` examples: the Mann-Whitney
/// statistic with ties counted one half, which equals sklearn's trapezoidal area. `None`
/// unless both classes are present.
pub fn roc_auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum the average ranks (1-based) of the positives, a tie group at a time.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + end + 1) as f64 / 2.0;
        let positives = order[start..end].iter().filter(|&&i| positive[i]).count();
        rank_sum += average_rank * positives as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The ROC curve as `(false positive rate, true positive rate)` points from (0, 0), one per
/// distinct score, highest first: sklearn's `roc_curve(drop_intermediate=False)`. Empty
/// unless both classes are present.
pub fn roc_curve(positive: &[bool], scores: &[f64]) -> Vec<(f64, f64)> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (k, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            points.push((fp as f64 / n_neg as f64, tp as f64 / n_pos as f64));
        }
    }
    points
}

/// The 2.5 and 97.5 percentiles (numpy's linear interpolation) of the AUC over `resamples`
/// bootstrap resamples of the examples, seeded; resamples where the AUC is undefined are
/// drawn again. `None` where the AUC itself is undefined.
pub fn bootstrap_auc(
    labels: &[usize],
    probabilities: &[f64],
    classes: usize,
    resamples: usize,
    seed: u64,
) -> Option<[f64; 2]> {
    auc(labels, probabilities, classes)?;
    let n = labels.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(resamples);
    let (mut y, mut p) = (vec![0; n], vec![0.0; n * classes]);
    while values.len() < resamples {
        for i in 0..n {
            let j = rng.random_range(0..n);
            y[i] = labels[j];
            p[i * classes..(i + 1) * classes]
                .copy_from_slice(&probabilities[j * classes..(j + 1) * classes]);
        }
        if let Some(v) = auc(&y, &p, classes) {
            values.push(v);
        }
    }
    values.sort_by(f64::total_cmp);
    Some([percentile(&values, 2.5), percentile(&values, 97.5)])
}

/// The `q`-th percentile of sorted `values`, interpolated linearly between ranks (numpy's
/// default).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let position = q / 100.0 * (values.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (position - lo as f64)
}

/// The mean and the sample standard deviation (`ddof=1`, 0 for one value) of `values`.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}
