//! Batch normalisation against the CPU reference (PyTorch's rules: biased variance to
//! normalise, unbiased into the running variance, momentum 0.1, eps 1e-5), in training and
//! evaluation, with and without the fused ReLU; max pooling against its reference; the
//! autograd op against PyTorch's BatchNorm2d (golden values in tests/fixtures/torch).

mod common;

use common::{Golden, assert_close, assert_relative, f64s, gpu, random};
use lim::Tensor;
use lim::autograd::Var;
use lim::ops::batchnorm::{EPS, MOMENTUM, reference};
use lim::ops::pool::{PoolBackward, PoolSpec, reference as pool_reference};

/// `[N, C, S]` of a BatchNorm1d or 2d input.
fn ncs(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

#[test]
fn training_and_evaluation_match_the_reference() {
    let gpu = gpu();
    // 1-D; odd 2-D; more values per channel than a workgroup has invocations.
    for (k, shape) in [&[3usize, 4][..], &[2, 3, 5, 7], &[8, 2, 1, 300]]
        .iter()
        .enumerate()
    {
        let (n, c, s) = ncs(shape);
        let hx: Vec<f32> = random(n * c * s, k as u64)
            .iter()
            .map(|v| 3.0 * v + 1.0)
            .collect();
        let (hg, hb) = (random(c, 10 + k as u64), random(c, 20 + k as u64));
        let x = Tensor::from_slice(&gpu, shape, &hx).unwrap();
        let gamma = Tensor::from_slice(&gpu, &[c], &hg).unwrap();
        let beta = Tensor::from_slice(&gpu, &[c], &hb).unwrap();
        let running_mean = Tensor::from_slice(&gpu, &[c], &vec![0.0; c]).unwrap();
        let running_var = Tensor::from_slice(&gpu, &[c], &vec![1.0; c]).unwrap();
        let stats = reference::stats(&f64s(&hx), n, c, s);
        let want = reference::apply(&f64s(&hx), &stats, &f64s(&hg), &f64s(&hb), c, s, EPS as f64);
        let (mut rm, mut rv) = (vec![0.0f64; c], vec![1.0f64; c]);
        for step in 0..3 {
            let (y, batch) = x
                .batch_norm_train(&gamma, &beta, &running_mean, &running_var, false)
                .unwrap();
            assert_close(
                &format!("train {shape:?}"),
                &y.to_vec().unwrap(),
                &want,
                |_| 1e-5,
            );
            let means: Vec<f64> = stats.iter().map(|s| s.0).collect();
            assert_close("batch mean", &batch.mean.to_vec().unwrap(), &means, |_| {
                1e-5
            });
            let m = MOMENTUM as f64;
            let count = (n * s) as f64;
            for ch in 0..c {
                rm[ch] = (1.0 - m) * rm[ch] + m * stats[ch].0;
                rv[ch] = (1.0 - m) * rv[ch] + m * stats[ch].1 * count / (count - 1.0);
            }
            let what = format!("running stats after step {step}, {shape:?}");
            assert_close(&what, &running_mean.to_vec().unwrap(), &rm, |_| 1e-5);
            assert_close(&what, &running_var.to_vec().unwrap(), &rv, |i| 1e-5 * rv[i]);
        }
        let running: Vec<(f64, f64)> = rm.iter().zip(&rv).map(|(&a, &b)| (a, b)).collect();
        let want = reference::apply(
            &f64s(&hx),
            &running,
            &f64s(&hg),
            &f64s(&hb),
            c,
            s,
            EPS as f64,
        );
        let y = x
            .batch_norm_eval(&gamma, &beta, &running_mean, &running_var, false)
            .unwrap();
        assert_close(
            &format!("eval {shape:?}"),
            &y.to_vec().unwrap(),
            &want,
            |_| 1e-5,
        );
        let fused = x
            .batch_norm_eval(&gamma, &beta, &running_mean, &running_var, true)
            .unwrap();
        let relu: Vec<f64> = want.iter().map(|v| v.max(0.0)).collect();
        assert_close(
            &format!("eval + relu {shape:?}"),
            &fused.to_vec().unwrap(),
            &relu,
            |_| 1e-5,
        );
    }
}

#[test]
fn max_pooling_and_its_gradient_match_the_reference() {
    let gpu = gpu();
    let cases = [
        (
            [1, 1, 1, 1],
            PoolSpec {
                k: 1,
                stride: 1,
                padding: 0,
            },
        ),
        ([2, 3, 7, 9], PoolSpec::RESNET),
        ([1, 2, 8, 8], PoolSpec::RESNET),
        (
            [2, 1, 5, 6],
            PoolSpec {
                k: 2,
                stride: 2,
                padding: 0,
            },
        ),
        (
            [1, 1, 9, 4],
            PoolSpec {
                k: 3,
                stride: 1,
                padding: 1,
            },
        ),
        (
            [1, 2, 13, 11],
            PoolSpec {
                k: 5,
                stride: 2,
                padding: 2,
            },
        ),
        (
            [2, 1, 10, 7],
            PoolSpec {
                k: 4,
                stride: 3,
                padding: 1,
            },
        ),
    ];
    for (k, (shape, spec)) in cases.iter().enumerate() {
        // Values from a few levels, so windows hold ties (PyTorch keeps the first maximum).
        let hx: Vec<f32> = random(shape.iter().product(), k as u64)
            .iter()
            .map(|v| (v * 3.0).round())
            .collect();
        let x = Tensor::from_slice(&gpu, shape, &hx).unwrap();
        let (y, argmax) = x.max_pool2d(*spec).unwrap();
        let (want, at) = pool_reference::max_pool2d(&f64s(&hx), *shape, *spec);
        assert_close(
            &format!("{shape:?} {spec:?}"),
            &y.to_vec().unwrap(),
            &want,
            |_| 0.0,
        );
        let hg = random(want.len(), 50 + k as u64);
        let g = Tensor::from_slice(&gpu, y.shape(), &hg).unwrap();
        let plane = shape[2] * shape[3];
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        let mut want_dx = vec![0.0; hx.len()];
        for (o, &i) in at.iter().enumerate() {
            want_dx[(o / (oh * ow)) * plane + i] += hg[o] as f64;
        }
        for variant in PoolBackward::ALL {
            let dx = g.max_pool2d_backward_with(&argmax, variant).unwrap();
            assert_close(
                &format!("gradient {shape:?} {spec:?}, {variant:?}"),
                &dx.to_vec().unwrap(),
                &want_dx,
                |_| 1e-6,
            );
        }
    }
    let x = Tensor::from_slice(&gpu, &[1, 1, 2, 2], &[0.0; 4]).unwrap();
    assert!(
        x.max_pool2d(PoolSpec {
            k: 3,
            stride: 1,
            padding: 0
        })
        .is_err()
    );
    assert!(
        x.max_pool2d(PoolSpec {
            k: 2,
            stride: 1,
            padding: 2
        })
        .is_err()
    );
}

/// The autograd op against `nn.BatchNorm2d` (torch_ref.py bn): the training forward, its
/// gradients, the running statistics it updates, and evaluation with them.
#[test]
fn training_gradients_and_running_stats_equal_pytorchs() {
    let gpu = gpu();
    for name in ["bn_4x3x5x5", "bn_2x7x3x11", "bn_one_pixel"] {
        let golden = Golden::open(&format!("torch/{name}.safetensors"));
        let load = |key: &str| golden.upload(&gpu, key);
        let x = Var::param(load("x"));
        let gamma = Var::param(load("weight"));
        let beta = Var::param(load("bias"));
        let running_mean = load("running_mean_before");
        let running_var = load("running_var_before");
        let y = x
            .batch_norm(&gamma, &beta, &running_mean, &running_var, true, false)
            .unwrap();
        let grad_out = Var::constant(load("grad_out"));
        y.mul(&grad_out)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let check = |what: &str, got: &Tensor, tol: f64| {
            assert_relative(
                &format!("{name} {what}"),
                &got.to_vec().unwrap(),
                &golden.values(what),
                tol,
            );
        };
        check("y", y.value(), 1e-5);
        check("grad_x", &x.grad().unwrap(), 1e-5);
        check("grad_weight", &gamma.grad().unwrap(), 1e-5);
        check("grad_bias", &beta.grad().unwrap(), 1e-5);
        check("running_mean", &running_mean, 1e-6);
        check("running_var", &running_var, 1e-6);
        let y_eval = x
            .detach()
            .batch_norm(&gamma, &beta, &running_mean, &running_var, false, false)
            .unwrap();
        check("y_eval", y_eval.value(), 1e-6);
    }
}
