#!/usr/bin/env python3
"""Golden classification metrics for tests/eval_metrics.rs, computed by scikit-learn.

Writes tests/fixtures/metrics/<case>.json: the labels and class probabilities of a random
case (rounded, so that scores tie), and what sklearn says of them: accuracy, ROC AUC (binary on
P(class 1), else macro one-vs-rest), F1 / precision / recall (binary, or macro, with
zero_division=0), the confusion matrix and, for binary cases, the ROC curve with every
threshold. The AUC is cross-checked against ../shared/ref/auc_ref.py, the project's reference.

Run with the reference venv: /work/.venv-ref/bin/python scripts/metrics-golden.py
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "metrics")
AUC_REF = os.path.join(HERE, "..", "..", "shared", "ref", "auc_ref.py")


def case(n, k, seed, signal, absent_pred=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += signal
    if absent_pred is not None:
        logits[:, absent_pred] -= 10.0  # never the argmax
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p = np.round(p, 2)
    p[:, -1] = np.round(1.0 - p[:, :-1].sum(1), 2)
    return y, p


def golden(y, p):
    k = p.shape[1]
    pred = p.argmax(1)
    average = "binary" if k == 2 else "macro"
    auc = (metrics.roc_auc_score(y, p[:, 1]) if k == 2 else
           metrics.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k))))
    out = {
        "labels": y.tolist(),
        "probabilities": p.tolist(),
        "classes": k,
        "accuracy": metrics.accuracy_score(y, pred),
        "auc": auc,
        "f1_average": average,
        "f1": metrics.f1_score(y, pred, average=average, zero_division=0),
        "precision": metrics.precision_score(y, pred, average=average, zero_division=0),
        "recall": metrics.recall_score(y, pred, average=average, zero_division=0),
        "confusion": metrics.confusion_matrix(y, pred, labels=list(range(k))).tolist(),
    }
    if k == 2:
        fpr, tpr, _ = metrics.roc_curve(y, p[:, 1], drop_intermediate=False)
        out["roc"] = [[float(a), float(b)] for a, b in zip(fpr, tpr)]
    return out


def reference_auc(y, p):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as f:
        w = csv.writer(f)
        k = p.shape[1]
        w.writerow(["label"] + (["score"] if k == 2 else [f"p{j}" for j in range(k)]))
        for label, row in zip(y, p):
            w.writerow([int(label)] + ([row[1]] if k == 2 else list(row)))
    res = json.loads(subprocess.check_output([sys.executable, AUC_REF, "--json", f.name]))
    os.unlink(f.name)
    return res["auc"] if k == 2 else res["macro"]


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = {
        "binary_ties": case(200, 2, 1, 1.0),
        "binary_never_positive": case(40, 2, 2, 0.5, absent_pred=1),
        "three_classes": case(150, 3, 3, 1.0),
        "five_classes_one_never_predicted": case(90, 5, 4, 1.5, absent_pred=2),
    }
    for name, (y, p) in cases.items():
        g = golden(y, p)
        ref = reference_auc(y, p)
        assert abs(ref - g["auc"]) < 1e-12, (name, ref, g["auc"])
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(g, f)
        print(f"{name}: n={len(y)} k={p.shape[1]} auc={g['auc']:.6f} f1={g['f1']:.6f}")


if __name__ == "__main__":
    main()
