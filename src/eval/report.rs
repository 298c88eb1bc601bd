//! What an evaluation writes: `report.json` (every split and repeat, and their mean and
//! standard deviation, with the metrics under `auc`, `accuracy`, `f1`, `precision`,
//! `recall`), `report.md` (the same as tables), `predictions.csv` (`id`, `split`, `repeat`,
//! `label`, then `p_<class>`: the softmax probabilities) and `roc.png` (the test split's ROC
//! curves: one per repeat for two classes, one per class of the first repeat otherwise).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::dataset::SPLITS;
use super::metrics::{Metrics, mean_std, roc_curve};
use crate::io::{Failure, IoError, write_atomic};
use crate::plot::{self, PALETTE, Series};

/// One split's predictions and their metrics.
#[derive(Clone, Debug, Serialize)]
pub struct SplitResult {
    #[serde(skip)]
    pub ids: Vec<String>,
    #[serde(skip)]
    pub labels: Vec<usize>,
    /// `[n, classes]`, row-major.
    #[serde(skip)]
    pub probabilities: Vec<f64>,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// One training run of the classifier.
#[derive(Clone, Debug, Serialize)]
pub struct RepeatResult {
    pub repeat: usize,
    pub seed: u64,
    /// The epoch whose weights were tested (0-based), and its validation accuracy.
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    /// By split name (`val`, `test`).
    pub splits: BTreeMap<String, SplitResult>,
}

/// A metric's mean and sample standard deviation over the repeats.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
}

/// A whole evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: String,
    pub data: String,
    /// The encoder's weights, or `random` for the scratch baseline.
    pub weights: String,
    pub arch: String,
    pub adapter: String,
    pub classes: Vec<String>,
    /// Samples per split, as used.
    pub samples: BTreeMap<String, usize>,
    /// Images that could not be read, with why.
    pub unreadable: Vec<Failure>,
    /// The protocol's settings.
    pub settings: serde_json::Value,
    pub repeats: Vec<RepeatResult>,
    /// By split, then metric.
    pub summary: BTreeMap<String, BTreeMap<String, Summary>>,
}

/// The metrics summarised over repeats, in report order.
const SUMMARISED: [&str; 5] = ["auc", "accuracy", "f1", "precision", "recall"];

fn metric(m: &Metrics, name: &str) -> Option<f64> {
    match name {
        "auc" => m.auc,
        "accuracy" => Some(m.accuracy),
        "f1" => Some(m.f1),
        "precision" => Some(m.precision),
        "recall" => Some(m.recall),
        _ => unreachable!("a summarised metric"),
    }
}

impl Report {
    /// Fills `summary` from `repeats`.
    pub fn summarise(&mut self) {
        self.summary.clear();
        let splits: Vec<String> = self
            .repeats
            .iter()
            .flat_map(|r| r.splits.keys().cloned())
            .collect();
        for split in splits {
            let mut by_metric = BTreeMap::new();
            for name in SUMMARISED {
                let values: Vec<f64> = self
                    .repeats
                    .iter()
                    .filter_map(|r| r.splits.get(&split).and_then(|s| metric(&s.metrics, name)))
                    .collect();
                if !values.is_empty() {
                    let (mean, std) = mean_std(&values);
                    by_metric.insert(name.to_string(), Summary { mean, std });
                }
            }
            self.summary.insert(split, by_metric);
        }
    }

    /// Writes `report.json`, `report.md`, `predictions.csv` and `roc.png` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), IoError> {
        let json = serde_json::to_string_pretty(self).expect("a report serialises");
        write_atomic(&dir.join("report.json"), json.as_bytes())?;
        write_atomic(&dir.join("report.md"), self.markdown().as_bytes())?;
        write_atomic(
            &dir.join("predictions.csv"),
            self.predictions_csv().as_bytes(),
        )?;
        plot::save_png(&self.roc_chart(), &dir.join("roc.png"))
    }

    fn predictions_csv(&self) -> String {
        let mut out = String::from("id,split,repeat,label");
        for c in &self.classes {
            write!(out, ",p_{c}").unwrap();
        }
        out.push('\n');
        for r in &self.repeats {
            for (split, s) in SPLITS
                .iter()
                .filter_map(|n| r.splits.get(*n).map(|s| (n, s)))
            {
                for (i, (id, label)) in s.ids.iter().zip(&s.labels).enumerate() {
                    write!(
                        out,
                        "{},{split},{},{}",
                        csv_field(id),
                        r.repeat,
                        self.classes[*label]
                    )
                    .unwrap();
                    for p in &s.probabilities[i * self.classes.len()..(i + 1) * self.classes.len()]
                    {
                        write!(out, ",{p}").unwrap();
                    }
                    out.push('\n');
                }
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let mut md = format!("# Evaluation: {} protocol\n\n", self.protocol);
        let samples: Vec<String> = self
            .samples
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            md,
            "- data: `{}` ({}; classes {})",
            self.data,
            samples.join(", "),
            self.classes.join(", ")
        )
        .unwrap();
        writeln!(
            md,
            "- encoder: {} with weights `{}`",
            self.arch, self.weights
        )
        .unwrap();
        writeln!(md, "- adapter: {}", self.adapter).unwrap();
        writeln!(md, "- settings: `{}`", self.settings).unwrap();
        if !self.unreadable.is_empty() {
            writeln!(
                md,
                "- unreadable images, left out: {}",
                self.unreadable.len()
            )
            .unwrap();
        }
        let average = self
            .repeats
            .first()
            .and_then(|r| r.splits.values().next())
            .map(|s| s.metrics.average);
        writeln!(
            md,
            "- F1, precision and recall: {:?} average\n",
            average.unwrap_or(super::metrics::Average::Binary)
        )
        .unwrap();
        for (split, metrics) in &self.summary {
            writeln!(md, "## {split} ({} repeats)\n", self.repeats.len()).unwrap();
            md.push_str("| metric | mean ± std |");
            for r in &self.repeats {
                write!(md, " repeat {} |", r.repeat).unwrap();
            }
            md.push_str("\n|---|---|");
            md.push_str(&"---|".repeat(self.repeats.len()));
            md.push('\n');
            for (name, s) in metrics {
                write!(md, "| {name} | {:.4} ± {:.4} |", s.mean, s.std).unwrap();
                for r in &self.repeats {
                    let v = r.splits.get(split).and_then(|x| metric(&x.metrics, name));
                    match v {
                        Some(v) => write!(md, " {v:.4} |").unwrap(),
                        None => md.push_str(" – |"),
                    }
                }
                md.push('\n');
            }
            md.push_str("| AUC 95 % bootstrap interval | |");
            for r in &self.repeats {
                match r.splits.get(split).and_then(|x| x.metrics.auc_ci95) {
                    Some([lo, hi]) => write!(md, " {lo:.4} – {hi:.4} |").unwrap(),
                    None => md.push_str(" – |"),
                }
            }
            md.push_str("\n\n");
        }
        if let Some(test) = self.repeats.first().and_then(|r| r.splits.get("test")) {
            md.push_str("Test confusion matrix of repeat 0 (rows: true class, columns: predicted):\n\n|   |");
            for c in &self.classes {
                write!(md, " {c} |").unwrap();
            }
            md.push_str("\n|---|");
            md.push_str(&"---|".repeat(self.classes.len()));
            md.push('\n');
            for (c, row) in self.classes.iter().zip(&test.metrics.confusion) {
                write!(md, "| **{c}** |").unwrap();
                for v in row {
                    write!(md, " {v} |").unwrap();
                }
                md.push('\n');
            }
            md.push_str("\n![ROC curves of the test split](roc.png)\n");
        }
        md
    }

    fn roc_chart(&self) -> image::RgbImage {
        let k = self.classes.len();
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        let column = |s: &SplitResult, c: usize| -> (Vec<bool>, Vec<f64>) {
            (
                s.labels.iter().map(|&y| y == c).collect(),
                s.probabilities.chunks(k).map(|p| p[c]).collect(),
            )
        };
        if k == 2 {
            for r in &self.repeats {
                if let Some(s) = r.splits.get("test") {
                    let (positive, scores) = column(s, 1);
                    let auc = s.metrics.auc.unwrap_or(f64::NAN);
                    curves.push((
                        format!("repeat {} (AUC {auc:.3})", r.repeat),
                        roc_curve(&positive, &scores),
                    ));
                }
            }
        } else if let Some(s) = self.repeats.first().and_then(|r| r.splits.get("test")) {
            for (c, name) in self.classes.iter().enumerate() {
                let (positive, scores) = column(s, c);
                curves.push((format!("{name} vs rest"), roc_curve(&positive, &scores)));
            }
        }
        let chance = [(0.0, 0.0), (1.0, 1.0)];
        let mut series: Vec<Series> = curves
            .iter()
            .enumerate()
            .map(|(i, (name, points))| Series {
                name,
                points,
                colour: PALETTE[i % PALETTE.len()],
                markers: false,
            })
            .collect();
        series.push(Series {
            name: "chance",
            points: &chance,
            colour: [160, 160, 160],
            markers: false,
        });
        let title = format!("ROC, test split, {} protocol, {}", self.protocol, self.arch);
        plot::line_chart(&title, "false positive rate", "true positive rate", &series)
    }
}

/// A CSV field, quoted where it holds a comma, quote or line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
