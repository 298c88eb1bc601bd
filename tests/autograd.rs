//! The autograd engine: gradients of a network-shaped function of every op against finite
//! differences of the same function in f64 on the CPU; the engine's bookkeeping (accumulation,
//! shared inputs, no_grad, detach); and a small MLP that learns its batch by heart.

mod common;

use common::{f64s, gpu, random};
use lim::Tensor;
use lim::autograd::{Var, no_grad};
use lim::ops::matmul::MatmulOptions;

/// Central differences of `f` at `x`.
fn finite_differences(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let h = 1e-5;
    (0..x.len())
        .map(|i| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect()
}

/// Asserts an f32 gradient from the GPU equals the f64 finite differences, within what f32
/// forward and backward passes leave.
fn assert_gradient(what: &str, got: &Tensor, want: &[f64]) {
    let got = got.to_vec().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-4 + 1e-3 * w.abs(),
            "{what}[{i}]: autograd {g}, finite differences {w}"
        );
    }
}

/// Asserts `loss` (computed on the GPU from `params`, already differentiated) equals `f` of
/// the parameters' f64 values, and each parameter's gradient equals f's finite differences.
fn assert_loss_and_gradients(
    loss: &Var,
    names: &[&str],
    params: &[Var],
    values: &[Vec<f64>],
    f: impl Fn(&[Vec<f64>]) -> f64,
) {
    let got = loss.value().to_vec().unwrap()[0] as f64;
    let want = f(values);
    assert!((got - want).abs() < 1e-5, "loss {got} against {want}");
    for (k, name) in names.iter().enumerate() {
        let numeric = finite_differences(
            |p| {
                let mut all = values.to_vec();
                all[k] = p.to_vec();
                f(&all)
            },
            &values[k],
        );
        assert_gradient(name, &params[k].grad().unwrap(), &numeric);
    }
}

/// Row-major `[rows, cols]` matrices in f64.
struct M<'a>(&'a [f64], usize);

impl M<'_> {
    fn at(&self, i: usize, j: usize) -> f64 {
        self.0[i * self.1 + j]
    }
}

fn linear(x: &[f64], rows: usize, w: &[f64], b: &[f64], out: usize) -> Vec<f64> {
    let inputs = x.len() / rows;
    let (x, w) = (M(x, inputs), M(w, inputs));
    (0..rows * out)
        .map(|e| {
            let (i, o) = (e / out, e % out);
            b[o] + (0..inputs).map(|k| x.at(i, k) * w.at(o, k)).sum::<f64>()
        })
        .collect()
}

fn rows(x: &[f64], n: usize, op: lim::ops::rows::RowOp) -> Vec<f64> {
    lim::ops::rows::reference::rows(x, n, op)
}

const ROWS: usize = 4;
const IN: usize = 6;
const HIDDEN: usize = 5;
const CLASSES: usize = 3;
const LABELS: [usize; ROWS] = [2, 0, 1, 2];

/// The function under test, in f64: cross-entropy of a two-layer perceptron, plus terms that
/// use softmax, L2 normalisation, a transposed matmul, mul, sum and mean.
fn loss_f64(params: &[&[f64]], u: &[f64], s: &[f64]) -> f64 {
    use lim::ops::rows::RowOp::*;
    let [x, w1, b1, w2, b2] = params[..] else {
        unreachable!()
    };
    let h: Vec<f64> = linear(x, ROWS, w1, b1, HIDDEN)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let z = linear(&h, ROWS, w2, b2, CLASSES);
    let logp = rows(&z, CLASSES, LogSoftmax);
    let ce = -(0..ROWS)
        .map(|i| logp[i * CLASSES + LABELS[i]])
        .sum::<f64>()
        / ROWS as f64;
    let soft: f64 = rows(&z, CLASSES, Softmax)
        .iter()
        .zip(s)
        .map(|(a, b)| a * b)
        .sum::<f64>()
        / (ROWS * CLASSES) as f64;
    let normed: f64 = rows(&h, HIDDEN, L2Normalize)
        .iter()
        .zip(u)
        .map(|(a, b)| a * b)
        .sum();
    let hm = M(&h, HIDDEN);
    let gram: f64 = (0..HIDDEN * HIDDEN)
        .map(|e| {
            (0..ROWS)
                .map(|r| hm.at(r, e / HIDDEN) * hm.at(r, e % HIDDEN))
                .sum::<f64>()
        })
        .sum::<f64>()
        / (HIDDEN * HIDDEN) as f64;
    ce + 0.5 * soft + 0.1 * normed + 0.01 * gram
}

/// The same function on [`Var`]s.
fn loss_var(p: &[Var], u: &Var, s: &Var) -> Var {
    let [x, w1, b1, w2, b2] = p else {
        unreachable!()
    };
    let h = x.linear(w1, Some(b1)).unwrap().relu().unwrap();
    let z = h.linear(w2, Some(b2)).unwrap();
    let ce = z.cross_entropy_classes(&LABELS).unwrap();
    let soft = z.softmax().unwrap().mul(s).unwrap().mean_all().unwrap();
    let normed = h
        .l2_normalize()
        .unwrap()
        .mul(u)
        .unwrap()
        .sum(1)
        .unwrap()
        .sum(0)
        .unwrap();
    let t = MatmulOptions {
        trans_a: true,
        trans_b: false,
    };
    let gram = h.matmul_t(&h, t).unwrap().mean_all().unwrap();
    ce.add(&soft.scale(0.5).unwrap())
        .unwrap()
        .add(&normed.scale(0.1).unwrap())
        .unwrap()
        .add(&gram.scale(0.01).unwrap())
        .unwrap()
}

#[test]
fn gradients_of_every_op_match_finite_differences() {
    let gpu = gpu();
    let shapes: [&[usize]; 5] = [
        &[ROWS, IN],
        &[HIDDEN, IN],
        &[HIDDEN],
        &[CLASSES, HIDDEN],
        &[CLASSES],
    ];
    let host: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| random(s.iter().product(), 10 + k as u64))
        .collect();
    let (hu, hs) = (random(ROWS * HIDDEN, 20), random(ROWS * CLASSES, 21));
    let params: Vec<Var> = shapes
        .iter()
        .zip(&host)
        .map(|(s, h)| Var::param(Tensor::from_slice(&gpu, s, h).unwrap()))
        .collect();
    let u = Var::constant(Tensor::from_slice(&gpu, &[ROWS, HIDDEN], &hu).unwrap());
    let s = Var::constant(Tensor::from_slice(&gpu, &[ROWS, CLASSES], &hs).unwrap());
    let loss = loss_var(&params, &u, &s);
    loss.backward().unwrap();

    let values: Vec<Vec<f64>> = host.iter().map(|h| f64s(h)).collect();
    let (u, s) = (f64s(&hu), f64s(&hs));
    let at = |values: &[Vec<f64>]| {
        let refs: Vec<&[f64]> = values.iter().map(|v| &v[..]).collect();
        loss_f64(&refs, &u, &s)
    };
    assert_loss_and_gradients(&loss, &["x", "w1", "b1", "w2", "b2"], &params, &values, at);
}

#[test]
fn matmul_gradients_for_every_transpose() {
    let gpu = gpu();
    let (m, k, n) = (3, 5, 2);
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let sa = if trans_a { [k, m] } else { [m, k] };
        let sb = if trans_b { [n, k] } else { [k, n] };
        let (ha, hb, hc) = (random(m * k, 1), random(k * n, 2), random(m * n, 3));
        let a = Var::param(Tensor::from_slice(&gpu, &sa, &ha).unwrap());
        let b = Var::param(Tensor::from_slice(&gpu, &sb, &hb).unwrap());
        let c = Var::constant(Tensor::from_slice(&gpu, &[m, n], &hc).unwrap());
        let opts = MatmulOptions { trans_a, trans_b };
        a.matmul_t(&b, opts)
            .unwrap()
            .mul(&c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // f(A, B) = sum(op(A) op(B) * C) in f64.
        let f = |a: &[f64], b: &[f64]| -> f64 {
            let mut total = 0.0;
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|t| {
                            let av = if trans_a { a[t * m + i] } else { a[i * k + t] };
                            let bv = if trans_b { b[j * k + t] } else { b[t * n + j] };
                            av * bv
                        })
                        .sum();
                    total += dot * hc[i * n + j] as f64;
                }
            }
            total
        };
        let (fa, fb): (Vec<f64>, Vec<f64>) = (
            ha.iter().map(|&v| v as f64).collect(),
            hb.iter().map(|&v| v as f64).collect(),
        );
        let what = format!("trans_a {trans_a}, trans_b {trans_b}");
        assert_gradient(
            &format!("dA {what}"),
            &a.grad().unwrap(),
            &finite_differences(|x| f(x, &fb), &fa),
        );
        assert_gradient(
            &format!("dB {what}"),
            &b.grad().unwrap(),
            &finite_differences(|x| f(&fa, x), &fb),
        );
    }
}

#[test]
fn gradients_accumulate_add_up_over_shared_inputs_and_stop_where_asked() {
    let gpu = gpu();
    let x = Var::param(Tensor::from_slice(&gpu, &[3], &[1.0, -2.0, 3.0]).unwrap());
    // y = sum(x * x + x): dy/dx = 2x + 1, with x used three times.
    let y = || x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    y().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), [3.0, -3.0, 7.0]);
    y().backward().unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec().unwrap(),
        [6.0, -6.0, 14.0],
        "accumulated"
    );
    x.zero_grad();
    assert!(x.grad().is_none());

    // Through detach only the other path counts: d/dx sum(detach(x) * x) = x.
    x.detach()
        .mul(&x)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), [1.0, -2.0, 3.0]);
    x.zero_grad();

    let quiet = no_grad(|| x.mul(&x).unwrap().sum_all().unwrap());
    assert!(!quiet.requires_grad());
    assert!(quiet.backward().is_err(), "nothing to differentiate");
    assert!(x.mul(&x).unwrap().backward().is_err(), "not a scalar");
    let constant = Var::constant(Tensor::from_slice(&gpu, &[3], &[1.0; 3]).unwrap());
    constant
        .mul(&x)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(constant.grad().is_none(), "constants get no gradient");
}

/// A frozen leaf (PyTorch's `requires_grad_(False)`) gets no gradient, the others get the
/// same gradients as before, and the backward pass records fewer dispatches: the gradients
/// nothing needs are never computed (the stem's input gradient, a frozen weight's).
#[test]
fn frozen_leaves_cost_no_gradient_work() {
    use lim::ops::conv2d::Conv2dSpec;
    // A device of its own, untuned: the dispatch counts are this test's alone.
    let opts = lim::GpuOptions {
        tuning: lim::gpu::Tuning::Off,
        ..lim::GpuOptions::from_env().unwrap()
    };
    let gpu = lim::Gpu::new(&opts).unwrap();
    let x = Var::constant(Tensor::from_slice(&gpu, &[2, 2, 5, 5], &random(100, 70)).unwrap());
    let param = |shape: &[usize], seed| {
        Var::param(Tensor::from_slice(&gpu, shape, &random(shape.iter().product(), seed)).unwrap())
    };
    let (w1, b1, w2, fc) = (
        param(&[3, 2, 3, 3], 71),
        param(&[3], 72),
        param(&[2, 3, 3, 3], 73),
        param(&[3, 8], 74),
    );
    let params = [&w1, &b1, &w2, &fc];
    // Backward dispatches and the gradients of `params`.
    let run = || {
        params.iter().for_each(|p| p.zero_grad());
        let loss = x
            .conv2d(&w1, Some(&b1), Conv2dSpec::new(1, 1))
            .unwrap()
            .relu()
            .unwrap()
            .conv2d(&w2, None, Conv2dSpec::new(2, 0))
            .unwrap()
            .reshape(&[2, 8])
            .unwrap()
            .linear(&fc, None)
            .unwrap()
            .cross_entropy_classes(&[1, 2])
            .unwrap();
        let before = gpu.counters();
        loss.backward().unwrap();
        let dispatches = (gpu.counters() - before).dispatches;
        let grads: Vec<Option<Vec<f32>>> = params
            .iter()
            .map(|p| p.grad().map(|g| g.to_vec().unwrap()))
            .collect();
        (dispatches, grads)
    };
    let (all, trained) = run();
    assert!(trained.iter().all(Option::is_some));

    w1.set_requires_grad(false).unwrap();
    let (without_w1, grads) = run();
    assert!(grads[0].is_none(), "a frozen weight gets no gradient");
    assert_eq!(grads[1..], trained[1..], "the others are unchanged");
    assert!(without_w1 < all, "{without_w1} dispatches, {all} unfrozen");

    // With the first convolution's bias frozen too, nothing before the second convolution
    // needs a gradient: neither the first's backward nor the second's input gradient runs.
    b1.set_requires_grad(false).unwrap();
    let (head_only, grads) = run();
    assert!(grads[..2].iter().all(Option::is_none));
    assert_eq!(grads[2..], trained[2..]);
    assert!(
        head_only < without_w1,
        "{head_only} dispatches, {without_w1} before"
    );

    w1.set_requires_grad(true).unwrap();
    b1.set_requires_grad(true).unwrap();
    assert_eq!(run(), (all, trained), "unfrozen again");
    let output = w1.scale(2.0).unwrap();
    let err = output.set_requires_grad(false).unwrap_err().to_string();
    assert!(err.contains("leaf") && err.contains("scale"), "{err}");
}

#[test]
fn a_small_mlp_learns_its_batch_by_heart() {
    let gpu = gpu();
    let (rows, inputs, hidden, classes) = (16, 8, 32, 4);
    let labels: Vec<usize> = (0..rows).map(|i| (i * 7 + 3) % classes).collect();
    let x = Var::constant(
        Tensor::from_slice(&gpu, &[rows, inputs], &random(rows * inputs, 1)).unwrap(),
    );
    // PyTorch's default Linear initialisation range, from a fixed seed.
    let init = |shape: &[usize], fan_in: usize, seed| {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = random(shape.iter().product(), seed)
            .iter()
            .map(|v| v * bound)
            .collect();
        Var::param(Tensor::from_slice(&gpu, shape, &values).unwrap())
    };
    let params = [
        init(&[hidden, inputs], inputs, 2),
        init(&[hidden], inputs, 3),
        init(&[classes, hidden], hidden, 4),
        init(&[classes], hidden, 5),
    ];
    let loss = || {
        let h = x
            .linear(&params[0], Some(&params[1]))
            .unwrap()
            .relu()
            .unwrap();
        h.linear(&params[2], Some(&params[3]))
            .unwrap()
            .cross_entropy_classes(&labels)
            .unwrap()
    };
    let first = loss().value().to_vec().unwrap()[0];
    let mut last = first;
    for step in 0..400 {
        let l = loss();
        l.backward().unwrap();
        no_grad(|| {
            for p in &params {
                p.value()
                    .add_(&p.grad().unwrap().scale(-0.5).unwrap())
                    .unwrap();
                p.zero_grad();
            }
        });
        if step % 50 == 49 {
            last = l.value().to_vec().unwrap()[0];
            if last < 0.01 * first {
                break;
            }
        }
    }
    assert!(last < 0.01 * first, "loss went from {first} to {last}");
}

#[test]
fn gradients_through_convolutions_match_finite_differences() {
    use lim::ops::conv2d::{Conv2dDims, Conv2dSpec, reference};
    let gpu = gpu();
    let (x_shape, w1_shape, w2_shape) = ([2, 2, 5, 5], [3, 2, 3, 3], [2, 3, 3, 2]);
    let (s1, s2) = (Conv2dSpec::new(1, 1), Conv2dSpec::new(2, 0));
    let d1 = Conv2dDims::infer(&x_shape, &w1_shape, s1).unwrap();
    let d2 = Conv2dDims::infer(&d1.out_shape(), &w2_shape, s2).unwrap();
    let features = d2.out_shape()[1..].iter().product::<usize>();
    let shapes: [&[usize]; 5] = [&x_shape, &w1_shape, &[3], &w2_shape, &[3, features]];
    let host: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| random(s.iter().product(), 60 + k as u64))
        .collect();
    let params: Vec<Var> = shapes
        .iter()
        .zip(&host)
        .map(|(s, h)| Var::param(Tensor::from_slice(&gpu, s, h).unwrap()))
        .collect();
    let [x, w1, b1, w2, fc] = &params[..] else {
        unreachable!()
    };
    // conv (bias) -> relu -> strided conv -> flatten -> linear -> cross-entropy.
    let h = x.conv2d(w1, Some(b1), s1).unwrap().relu().unwrap();
    let z = h
        .conv2d(w2, None, s2)
        .unwrap()
        .reshape(&[2, features])
        .unwrap();
    let loss = z
        .linear(fc, None)
        .unwrap()
        .cross_entropy_classes(&[1, 2])
        .unwrap();
    loss.backward().unwrap();

    let f = |p: &[Vec<f64>]| -> f64 {
        let mut h = reference::forward(&p[0], &p[1], &d1);
        let plane = d1.oh * d1.ow;
        for (i, v) in h.iter_mut().enumerate() {
            *v = (*v + p[2][(i / plane) % 3]).max(0.0);
        }
        let z = reference::forward(&h, &p[3], &d2);
        let logits = linear(&z, 2, &p[4], &[0.0; 3], 3);
        let logp = rows(&logits, 3, lim::ops::rows::RowOp::LogSoftmax);
        -(logp[1] + logp[3 + 2]) / 2.0
    };
    let values: Vec<Vec<f64>> = host
        .iter()
        .map(|h| h.iter().map(|&v| v as f64).collect())
        .collect();
    assert_loss_and_gradients(&loss, &["x", "w1", "b1", "w2", "fc"], &params, &values, f);
}

#[test]
fn gradients_through_a_residual_block_match_finite_differences() {
    use lim::ops::batchnorm::{EPS, reference as bn};
    use lim::ops::conv2d::{Conv2dDims, Conv2dSpec, reference as conv};
    use lim::ops::pool::{PoolSpec, reference as pool};
    let gpu = gpu();
    let x_shape = [4, 2, 6, 6];
    let spec = Conv2dSpec::new(1, 1);
    let d1 = Conv2dDims::infer(&x_shape, &[3, 2, 3, 3], spec).unwrap();
    let pooled = [4, 3, 3, 3];
    let d2 = Conv2dDims::infer(&pooled, &[3, 3, 3, 3], spec).unwrap();
    let shapes: [&[usize]; 9] = [
        &x_shape,
        &[3, 2, 3, 3],
        &[3],
        &[3],
        &[3, 3, 3, 3],
        &[3],
        &[3],
        &[2, 3],
        &[2],
    ];
    let host: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let v = random(s.iter().product(), 90 + k as u64);
            // BatchNorm scales near 1, as initialised, so no channel collapses.
            if k == 2 || k == 5 {
                v.iter().map(|g| 1.0 + 0.3 * g).collect()
            } else {
                v
            }
        })
        .collect();
    let params: Vec<Var> = shapes
        .iter()
        .zip(&host)
        .map(|(s, h)| Var::param(Tensor::from_slice(&gpu, s, h).unwrap()))
        .collect();
    let [x, w1, g1, b1, w2, g2, b2, fc, fc_b] = &params[..] else {
        unreachable!()
    };
    let (rm, rv) = ([0.1f32, -0.2, 0.3], [0.5f32, 1.5, 2.0]);
    let running = |t: &[f32]| Tensor::from_slice(&gpu, &[3], t).unwrap();
    let (rm1, rv1, rm2, rv2) = (
        running(&[0.0; 3]),
        running(&[1.0; 3]),
        running(&rm),
        running(&rv),
    );
    // conv -> BN (batch statistics) + ReLU -> max pool -> conv -> BN, + shortcut, ReLU;
    // split and rejoined along the batch; global average pool -> linear -> cross-entropy;
    // plus a term through BN with running statistics.
    let h = x
        .conv2d(w1, None, spec)
        .unwrap()
        .batch_norm(g1, b1, &rm1, &rv1, true, true)
        .unwrap()
        .max_pool2d(PoolSpec::RESNET)
        .unwrap();
    let r = h
        .conv2d(w2, None, spec)
        .unwrap()
        .batch_norm(g2, b2, &rm2, &rv2, true, false)
        .unwrap();
    let y = r.add(&h).unwrap().relu().unwrap();
    let y =
        Var::concat_batch(&[&y.slice_batch(0, 1).unwrap(), &y.slice_batch(1, 3).unwrap()]).unwrap();
    let logits = y.global_avg_pool().unwrap().linear(fc, Some(fc_b)).unwrap();
    let ce = logits.cross_entropy_classes(&[0, 1, 1, 0]).unwrap();
    // (Running statistics as they were before this forward moved them: copied first.)
    let (rm2_before, rv2_before) = (running(&rm), running(&rv));
    let frozen = h
        .batch_norm(g2, b2, &rm2_before, &rv2_before, false, false)
        .unwrap();
    let loss = ce
        .add(&frozen.mean_all().unwrap().scale(0.1).unwrap())
        .unwrap();
    loss.backward().unwrap();

    let f = |p: &[Vec<f64>]| -> f64 {
        let bn_train = |v: &[f64], c: usize, s: usize, g: &[f64], b: &[f64]| {
            let stats = bn::stats(v, v.len() / (c * s), c, s);
            bn::apply(v, &stats, g, b, c, s, EPS as f64)
        };
        let a = bn_train(&conv::forward(&p[0], &p[1], &d1), 3, 36, &p[2], &p[3]);
        let a: Vec<f64> = a.iter().map(|v| v.max(0.0)).collect();
        let (h, _) = pool::max_pool2d(&a, [4, 3, 6, 6], PoolSpec::RESNET);
        let r = bn_train(&conv::forward(&h, &p[4], &d2), 3, 9, &p[5], &p[6]);
        let y: Vec<f64> = r.iter().zip(&h).map(|(a, b)| (a + b).max(0.0)).collect();
        let pooled: Vec<f64> = y.chunks(9).map(|c| c.iter().sum::<f64>() / 9.0).collect();
        let logits = linear(&pooled, 4, &p[7], &p[8], 2);
        let logp = rows(&logits, 2, lim::ops::rows::RowOp::LogSoftmax);
        let ce = -(logp[0] + logp[3] + logp[5] + logp[6]) / 4.0;
        let stats: Vec<(f64, f64)> = rm
            .iter()
            .zip(&rv)
            .map(|(&m, &v)| (m as f64, v as f64))
            .collect();
        let frozen = bn::apply(&h, &stats, &p[5], &p[6], 3, 9, EPS as f64);
        ce + 0.1 * frozen.iter().sum::<f64>() / frozen.len() as f64
    };
    let values: Vec<Vec<f64>> = host
        .iter()
        .map(|h| h.iter().map(|&v| v as f64).collect())
        .collect();
    let names = ["x", "w1", "g1", "b1", "w2", "g2", "b2", "fc", "fc_b"];
    assert_loss_and_gradients(&loss, &names, &params, &values, f);
}
