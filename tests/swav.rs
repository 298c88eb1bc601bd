//! SwAV's pieces: Sinkhorn-Knopp and the swapped-prediction loss against PyTorch's golden
//! values (facebookresearch/swav's and the paper's code, tests/fixtures/swav/make_golden.sh),
//! against f64 references on awkward shapes, and at score ranges where the paper's formula
//! overflows.

mod common;

use common::{Golden, assert_close, f64s, gpu, random};
use lim::Tensor;
use lim::autograd::Var;
use lim::dist::Solo;
use lim::ssl::{SwavLoss, reference, sinkhorn};

#[test]
fn sinkhorn_equals_pytorchs() {
    let gpu = gpu();
    for file in [
        "sinkhorn_fb_16x10",
        "sinkhorn_paper_7x129",
        "sinkhorn_near_one",
    ] {
        let golden = Golden::open(&format!("swav/{file}.safetensors"));
        let scores = golden.upload(&gpu, "scores");
        let q = sinkhorn(&scores, 0.05, 3).unwrap();
        assert_eq!(q.shape(), scores.shape());
        let want = f64s(&golden.values("q"));
        assert_close(file, &q.to_vec().unwrap(), &want, |i| {
            2e-6 + 1e-4 * want[i].abs()
        });
    }
}

/// Shapes with one sample, one prototype, lines shorter and longer than a workgroup, and
/// every iteration count from none up.
#[test]
fn sinkhorn_equals_the_papers_formula_on_awkward_shapes() {
    let gpu = gpu();
    let shapes = [(1, 1), (1, 7), (7, 1), (65, 3), (3, 200), (130, 70)];
    for (n, &(b, k)) in shapes.iter().enumerate() {
        for iterations in [0, 1, 3, 5] {
            for epsilon in [0.05, 0.5] {
                let scores = random(b * k, n as u64 * 10 + iterations as u64);
                let t = Tensor::from_slice(&gpu, &[b, k], &scores).unwrap();
                let got = sinkhorn(&t, epsilon, iterations).unwrap().to_vec().unwrap();
                let want = reference::sinkhorn_paper(&f64s(&scores), k, epsilon as f64, iterations);
                assert_close(
                    &format!("[{b}, {k}], {iterations} iterations, epsilon {epsilon}"),
                    &got,
                    &want,
                    |i| 1e-6 + 1e-4 * want[i].abs(),
                );
            }
        }
    }
}

/// Scores far outside the cosine range: the paper's exp(s / 0.05) is inf beyond 4.4 in f32
/// (and the f64 formula beyond 35); lim's codes stay finite rows that sum to 1 and equal the
/// log-domain reference.
#[test]
fn sinkhorn_is_finite_for_any_score_range() {
    let gpu = gpu();
    let (b, k) = (33, 70);
    for magnitude in [5.0f32, 100.0, 1e4] {
        let scores: Vec<f32> = random(b * k, 7).iter().map(|v| v * magnitude).collect();
        let t = Tensor::from_slice(&gpu, &[b, k], &scores).unwrap();
        let got = sinkhorn(&t, 0.05, 3).unwrap().to_vec().unwrap();
        assert!(got.iter().all(|v| v.is_finite()), "magnitude {magnitude}");
        for row in got.chunks(k) {
            let sum: f32 = row.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "magnitude {magnitude}: a row sums to {sum}"
            );
        }
        let want = reference::sinkhorn_log(&f64s(&scores), k, 0.05, 3);
        assert_close(&format!("magnitude {magnitude}"), &got, &want, |i| {
            1e-5 + 1e-3 * want[i].abs()
        });
    }
}

#[test]
fn sinkhorn_refuses_what_it_cannot_compute() {
    let gpu = gpu();
    let t = Tensor::from_slice(&gpu, &[2, 3], &[0.0; 6]).unwrap();
    for (what, result) in [
        ("a vector", sinkhorn(&t.reshape(&[6]).unwrap(), 0.05, 3)),
        ("epsilon 0", sinkhorn(&t, 0.0, 3)),
        ("epsilon NaN", sinkhorn(&t, f32::NAN, 3)),
    ] {
        let err = result.expect_err(what).to_string();
        assert!(err.contains("sinkhorn"), "{what}: {err}");
    }
}

/// The f64 references agree with each other wherever the paper's formula does not overflow.
#[test]
fn log_domain_reference_equals_the_papers_formula() {
    let scores = f64s(&random(9 * 13, 3));
    let paper = reference::sinkhorn_paper(&scores, 13, 0.05, 3);
    let log = reference::sinkhorn_log(&scores, 13, 0.05, 3);
    for (p, l) in paper.iter().zip(&log) {
        assert!((p - l).abs() < 1e-12, "{p} vs {l}");
    }
}

fn assert_loss_equals_golden(file: &str, crops: usize) {
    let gpu = gpu();
    let golden = Golden::open(&format!("swav/{file}.safetensors"));
    let batch = golden.meta("B") as usize;
    let scores = Var::param(golden.upload(&gpu, "scores"));
    assert_eq!(scores.shape()[0], crops * batch);
    let out = SwavLoss::default()
        .forward(&scores, batch, &[None, None], &Solo)
        .unwrap();
    out.loss.backward().unwrap();
    let loss = out.loss.value().to_vec().unwrap()[0] as f64;
    let want = golden.values("loss")[0] as f64;
    assert!(
        (loss - want).abs() < 1e-5 * want.abs(),
        "{file}: loss {loss}, torch {want}"
    );
    for (name, q) in ["q0", "q1"].iter().zip(&out.codes) {
        let want = f64s(&golden.values(name));
        assert_close(name, &q.to_vec().unwrap(), &want, |i| {
            2e-6 + 1e-4 * want[i].abs()
        });
    }
    let want = f64s(&golden.values("grad_scores"));
    let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    assert_close(
        &format!("{file}: grad_scores"),
        &scores.grad().unwrap().to_vec().unwrap(),
        &want,
        |_| 1e-4 * scale,
    );
}

#[test]
fn swav_loss_and_gradient_equal_facebooks() {
    assert_loss_equals_golden("swav_fb_2crops", 2);
}

/// The paper's 2 + 6 crops, with its `log(softmax)` and u/r/c Sinkhorn.
#[test]
fn swav_loss_and_gradient_equal_the_papers() {
    assert_loss_equals_golden("swav_paper_8crops", 8);
}

/// Three crops with codes from crops 0 and 2 (the middle one is only predicted from), against
/// the f64 reference; the reference's gradient against finite differences of its loss with
/// the codes held fixed (Sinkhorn has no gradient).
#[test]
fn swav_loss_gradient_equals_the_reference_and_finite_differences() {
    let gpu = gpu();
    let (crops, batch, k) = (3, 5, 9);
    let scores: Vec<f32> = random(crops * batch * k, 21);
    let s = Var::param(Tensor::from_slice(&gpu, &[crops * batch, k], &scores).unwrap());
    let loss_fn = SwavLoss {
        crops_for_assign: vec![0, 2],
        ..SwavLoss::default()
    };
    let out = loss_fn.forward(&s, batch, &[None, None], &Solo).unwrap();
    out.loss.backward().unwrap();
    let x = f64s(&scores);
    let (want_loss, want_grad) = reference::swav_loss(&x, k, batch, &[0, 2], 0.1, 0.05, 3);
    let got = out.loss.value().to_vec().unwrap()[0] as f64;
    assert!(
        (got - want_loss).abs() < 1e-5,
        "loss {got}, reference {want_loss}"
    );
    assert_close(
        "grad",
        &s.grad().unwrap().to_vec().unwrap(),
        &want_grad,
        |i| 1e-6 + 1e-4 * want_grad[i].abs(),
    );
    // With fixed codes the loss is a plain cross-entropy of the scores.
    let codes: Vec<Vec<f64>> = out
        .codes
        .iter()
        .map(|q| f64s(&q.to_vec().unwrap()))
        .collect();
    let fixed = |s: &[f64]| {
        let mut loss = 0.0;
        for (q, a) in codes.iter().zip([0, 2]) {
            for v in (0..crops).filter(|&v| v != a) {
                for i in 0..batch {
                    let row: Vec<f64> = (0..k).map(|j| s[(v * batch + i) * k + j] / 0.1).collect();
                    let top = row.iter().fold(f64::NEG_INFINITY, |m, &r| m.max(r));
                    let lse = top + row.iter().map(|r| (r - top).exp()).sum::<f64>().ln();
                    for j in 0..k {
                        loss -= q[i * k + j] * (row[j] - lse) / (2 * (crops - 1) * batch) as f64;
                    }
                }
            }
        }
        loss
    };
    let h = 1e-6;
    for i in 0..x.len() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (fixed(&up) - fixed(&down)) / (2.0 * h);
        assert!(
            (numeric - want_grad[i]).abs() < 1e-5,
            "reference gradient [{i}]: {} against finite differences {numeric}",
            want_grad[i]
        );
    }
}

/// A queue prepends scores of earlier embeddings to what Sinkhorn sees; the batch's codes are
/// the last rows of the codes of everything.
#[test]
fn queued_scores_join_the_sinkhorn_input() {
    let gpu = gpu();
    let (batch, k, queued) = (4, 6, 8);
    let scores = random(2 * batch * k, 31);
    let queue: Vec<f32> = random(queued * k, 32);
    let s = Var::param(Tensor::from_slice(&gpu, &[2 * batch, k], &scores).unwrap());
    let q = Tensor::from_slice(&gpu, &[queued, k], &queue).unwrap();
    let out = SwavLoss::default()
        .forward(&s, batch, &[Some(q.clone()), Some(q)], &Solo)
        .unwrap();
    for (a, codes) in out.codes.iter().enumerate() {
        let mut all = f64s(&queue);
        all.extend(f64s(&scores[a * batch * k..(a + 1) * batch * k]));
        let want = reference::sinkhorn_log(&all, k, 0.05, 3)[queued * k..].to_vec();
        assert_close("queued codes", &codes.to_vec().unwrap(), &want, |i| {
            1e-6 + 1e-4 * want[i]
        });
    }
}
