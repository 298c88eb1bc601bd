//! Tensors larger than one storage binding are split along the batch (or rows, or outer
//! indices), not rejected. A device that binds at most a few KiB makes small tensors take
//! that path, from binding offsets that do not fall on image boundaries; every op's results
//! equal the same op's on the shared device, which binds them whole.

mod common;

use std::sync::Arc;

use common::{assert_close, gpu, gpu_binding_at_most, random};
use lim::autograd::Var;
use lim::ops::pool::PoolSpec;
use lim::ops::reduce::{ReduceOp, ReduceVariant};
use lim::ops::rows::RowOp;
use lim::{Gpu, Tensor};

const LIMIT: u64 = 2048;

fn on(gpu: &Arc<Gpu>, shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from_slice(gpu, shape, values).unwrap()
}

fn does_not_fit(shape: &[usize]) {
    let bytes = shape.iter().product::<usize>() as u64 * 4;
    assert!(bytes > LIMIT, "{shape:?} must not fit one binding");
}

/// Runs `ops` on the small-binding device and on the shared one, and compares what each
/// returns, name by name, to `tol` relative.
fn assert_split_equals_whole(tol: f64, ops: impl Fn(&Arc<Gpu>) -> Vec<(&'static str, Tensor)>) {
    let small = gpu_binding_at_most(LIMIT);
    let whole = gpu();
    for ((name, got), (_, want)) in ops(&small).into_iter().zip(ops(&whole)) {
        let want: Vec<f64> = want.to_vec().unwrap().iter().map(|&v| v as f64).collect();
        assert_close(name, &got.to_vec().unwrap(), &want, |i| {
            tol * (1.0 + want[i].abs())
        });
    }
}

#[test]
fn batch_norm_splits_along_the_batch() {
    // BatchNorm2d with 540-byte images, and BatchNorm1d with 8-byte ones.
    for (k, shape) in [&[7usize, 3, 5, 9][..], &[600, 2]].iter().enumerate() {
        does_not_fit(shape);
        let (c, numel) = (shape[1], shape.iter().product::<usize>());
        let hx: Vec<f32> = random(numel, 70 + k as u64)
            .iter()
            .map(|v| 2.0 * v + 0.5)
            .collect();
        let hdy = random(numel, 80 + k as u64);
        let (hg, hb) = (random(c, 90 + k as u64), random(c, 100 + k as u64));
        assert_split_equals_whole(1e-5, |gpu| {
            let x = on(gpu, shape, &hx);
            let (gamma, beta) = (on(gpu, &[c], &hg), on(gpu, &[c], &hb));
            let rm = on(gpu, &[c], &vec![0.0; c]);
            let rv = on(gpu, &[c], &vec![1.0; c]);
            let (y, stats) = x.batch_norm_train(&gamma, &beta, &rm, &rv, true).unwrap();
            let (dx, dgamma, dbeta) = on(gpu, shape, &hdy)
                .batch_norm_backward(&x, &gamma, &stats)
                .unwrap();
            let eval = x.batch_norm_eval(&gamma, &beta, &rm, &rv, false).unwrap();
            vec![
                ("batch_norm y", y),
                ("batch mean", stats.mean),
                ("batch var", stats.var),
                ("running mean", rm),
                ("running var", rv),
                ("batch_norm dx", dx),
                ("dgamma", dgamma),
                ("dbeta", dbeta),
                ("batch_norm eval", eval),
            ]
        });
    }
}

#[test]
fn max_pooling_splits_along_the_planes() {
    // 396-byte input planes, 120-byte output planes.
    let shape = [3, 5, 9, 11];
    does_not_fit(&shape);
    let hx = random(shape.iter().product(), 110);
    assert_split_equals_whole(0.0, |gpu| {
        let (y, argmax) = on(gpu, &shape, &hx).max_pool2d(PoolSpec::RESNET).unwrap();
        let dy = random(y.numel(), 111);
        let dx = on(gpu, y.shape(), &dy)
            .max_pool2d_backward(&argmax)
            .unwrap();
        vec![("max_pool2d", y), ("max_pool2d gradient", dx)]
    });
}

#[test]
fn row_ops_split_along_the_rows() {
    let shape = [300, 7];
    does_not_fit(&shape);
    let hx = random(300 * 7, 120);
    let hg = random(300 * 7, 121);
    assert_split_equals_whole(1e-6, |gpu| {
        let (x, g) = (on(gpu, &shape, &hx), on(gpu, &shape, &hg));
        let mut out = Vec::new();
        for (name, op) in [
            ("softmax", RowOp::Softmax),
            ("log_softmax", RowOp::LogSoftmax),
            ("l2_normalize", RowOp::L2Normalize),
        ] {
            let y = x.rows(op).unwrap();
            let saved = if op == RowOp::L2Normalize { &x } else { &y };
            let dx = g.rows_backward(saved, op).unwrap();
            out.extend([(name, y), ("row op gradient", dx)]);
        }
        out
    });
}

#[test]
fn reductions_and_their_expansion_split_along_outer_indices() {
    // Global average pooling's reduction ([N, C, H W] over the pixels) and its gradient's
    // expansion, and a middle axis.
    let shape = [6, 10, 13];
    does_not_fit(&shape);
    let hx = random(6 * 10 * 13, 130);
    assert_split_equals_whole(1e-6, |gpu| {
        let x = on(gpu, &shape, &hx);
        let mut out = Vec::new();
        for variant in ReduceVariant::ALL {
            out.push((
                "mean over the last axis",
                x.reduce_with(2, ReduceOp::Mean, variant).unwrap(),
            ));
            out.push((
                "max over the middle axis",
                x.reduce_with(1, ReduceOp::Max, variant).unwrap(),
            ));
        }
        let pooled = x
            .reduce_with(2, ReduceOp::Sum, ReduceVariant::Serial)
            .unwrap();
        out.push(("expand", pooled.expand_axis(2, 13).unwrap()));
        out
    });
}

/// Forward, backward and the gradients of a small ResNet at a batch whose input and stem
/// activations exceed 256 KiB (a 7 x 7 stem's image needs 147 KiB for im2col, so the
/// limit cannot be as low as the other tests').
#[test]
fn a_resnet_training_step_splits_wherever_it_must() {
    use lim::nn::{self, Arch, Random, ResNet, ResNetConfig};
    const NET_LIMIT: u64 = 256 << 10;
    let config = ResNetConfig {
        arch: Arch::ResNet18,
        in_channels: 3,
        width: 1.0 / 16.0,
        num_classes: Some(3),
    };
    let shape = [80, 3, 32, 32];
    // The stem's output, [80, 4, 16, 16], too.
    const { assert!(80 * 4 * 16 * 16 * 4 > NET_LIMIT) };
    let images = random(shape.iter().product(), 140);
    let labels: Vec<usize> = (0..80).map(|i| i % 3).collect();
    let step = |gpu: &Arc<Gpu>| -> Vec<(String, Vec<f32>)> {
        let model = ResNet::new(config, &mut Random::new(gpu, 9)).unwrap();
        let x = Var::constant(on(gpu, &shape, &images));
        let loss = model
            .forward(&x, true)
            .unwrap()
            .cross_entropy_classes(&labels)
            .unwrap();
        loss.backward().unwrap();
        let mut out = vec![("loss".to_string(), loss.value().to_vec().unwrap())];
        for (name, p) in nn::named_parameters(&model) {
            out.push((
                format!("{name} gradient"),
                p.grad().unwrap().to_vec().unwrap(),
            ));
        }
        out
    };
    let small = step(&gpu_binding_at_most(NET_LIMIT));
    let whole = step(&gpu());
    for ((name, got), (_, want)) in small.iter().zip(&whole) {
        common::assert_relative(name, got, want, 1e-4);
    }
}
