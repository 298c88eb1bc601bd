//! lim's classification metrics against scikit-learn's on committed goldens
//! (tests/fixtures/metrics/make_golden.py: random cases with tied scores, a class never predicted, a
//! binary case where every score ties), and the bootstrap interval's behaviour.

use lim::eval::metrics::{Average, Metrics, auc, bootstrap_auc, mean_std, percentile, roc_curve};
use serde_json::Value;

struct Golden {
    name: String,
    labels: Vec<usize>,
    probabilities: Vec<f64>,
    classes: usize,
    json: Value,
}

fn goldens() -> Vec<Golden> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics");
    let mut out: Vec<Golden> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let labels = json["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let probabilities = json["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            Golden {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                labels,
                probabilities,
                classes: json["classes"].as_u64().unwrap() as usize,
                json,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(out.len(), 4, "every golden case is there");
    out
}

fn close(name: &str, what: &str, got: f64, want: &Value) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{name}: golden {what} is not a number"));
    assert!(
        (got - want).abs() <= 1e-12,
        "{name}: {what} {got} vs sklearn {want}"
    );
}

#[test]
fn metrics_equal_sklearn() {
    for g in goldens() {
        let m = Metrics::compute(&g.labels, &g.probabilities, g.classes, 0);
        let name = g.name.as_str();
        assert_eq!(m.n, g.labels.len());
        close(name, "accuracy", m.accuracy, &g.json["accuracy"]);
        close(name, "auc", m.auc.unwrap(), &g.json["auc"]);
        close(name, "f1", m.f1, &g.json["f1"]);
        close(name, "precision", m.precision, &g.json["precision"]);
        close(name, "recall", m.recall, &g.json["recall"]);
        let average = if g.classes == 2 {
            Average::Binary
        } else {
            Average::Macro
        };
        assert_eq!(m.average, average, "{name}");
        assert_eq!(
            serde_json::to_value(m.average).unwrap(),
            g.json["f1_average"],
            "{name}"
        );
        let confusion: Vec<Vec<usize>> =
            serde_json::from_value(g.json["confusion"].clone()).unwrap();
        assert_eq!(m.confusion, confusion, "{name}: confusion matrix");
    }
}

#[test]
fn roc_curve_equals_sklearn() {
    let mut checked = 0;
    for g in goldens().into_iter().filter(|g| g.classes == 2) {
        let positive: Vec<bool> = g.labels.iter().map(|&y| y == 1).collect();
        let scores: Vec<f64> = g.probabilities.chunks(2).map(|p| p[1]).collect();
        let curve = roc_curve(&positive, &scores);
        let want: Vec<(f64, f64)> = serde_json::from_value(g.json["roc"].clone()).unwrap();
        assert_eq!(
            curve.len(),
            want.len(),
            "{}: one point per distinct score",
            g.name
        );
        for (got, want) in curve.iter().zip(&want) {
            assert!(
                (got.0 - want.0).abs() < 1e-12 && (got.1 - want.1).abs() < 1e-12,
                "{}: {got:?} vs {want:?}",
                g.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn undefined_auc_is_none() {
    assert_eq!(auc(&[1, 1, 1], &[0.2, 0.8, 0.1, 0.9, 0.3, 0.7], 2), None);
    assert_eq!(
        bootstrap_auc(&[0, 0], &[0.6, 0.4, 0.3, 0.7], 2, 10, 0),
        None
    );
    let m = Metrics::compute(&[0, 0], &[0.6, 0.4, 0.3, 0.7], 2, 0);
    assert_eq!((m.auc, m.auc_ci95), (None, None));
    assert_eq!(m.accuracy, 0.5);
}

#[test]
fn bootstrap_interval_brackets_the_auc_and_is_seeded() {
    let g = goldens()
        .into_iter()
        .find(|g| g.name == "binary_ties")
        .unwrap();
    let point = auc(&g.labels, &g.probabilities, 2).unwrap();
    let [lo, hi] = bootstrap_auc(&g.labels, &g.probabilities, 2, 500, 7).unwrap();
    assert!(lo < point && point < hi, "{lo} < {point} < {hi}");
    // About ±1.96 standard errors of an AUC near 0.88 from 200 examples: roughly ±0.05.
    assert!(hi - lo > 0.04 && hi - lo < 0.15, "width {}", hi - lo);
    assert_eq!(
        bootstrap_auc(&g.labels, &g.probabilities, 2, 500, 7),
        Some([lo, hi])
    );
    assert_ne!(
        bootstrap_auc(&g.labels, &g.probabilities, 2, 500, 8),
        Some([lo, hi])
    );
    // The interval of a quarter of the data is wider.
    let n = g.labels.len() / 4;
    let [qlo, qhi] = bootstrap_auc(&g.labels[..n], &g.probabilities[..2 * n], 2, 500, 7).unwrap();
    assert!(qhi - qlo > hi - lo);
}

#[test]
fn summaries_as_numpy() {
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
    assert_eq!(percentile(&[0.0, 10.0], 97.5), 9.75);
    let (mean, std) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(mean, 2.5);
    assert!((std - 1.2909944487358056).abs() < 1e-15, "ddof=1");
    assert_eq!(mean_std(&[0.7]), (0.7, 0.0));
}
