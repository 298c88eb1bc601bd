//! Reductions against the CPU reference: every variant, every axis, awkward shapes, and more
//! outputs than 65,535 workgroups in one dimension.

mod common;

use common::{EPS, assert_close, gpu, random};
use lim::ops::reduce::{ReduceOp, ReduceVariant, reference};
use lim::{Error, Tensor};

const SHAPES: &[&[usize]] = &[
    &[1],
    &[7],
    &[1, 1],
    &[3, 5],
    &[2, 3, 4],
    &[5, 1, 13],
    &[1, 9973],
    &[11, 257, 3],
];

/// Recursive f32 summation of `len` terms errs by at most (len - 1) u sum|x| (u = EPS / 2).
fn tolerance(x: &[f32], shape: &[usize], axis: usize, op: ReduceOp) -> Vec<f64> {
    let abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let len = shape[axis] as f64;
    reference::reduce(&abs, shape, axis, ReduceOp::Sum)
        .into_iter()
        .map(|sum_abs| match op {
            ReduceOp::Sum => len * EPS * sum_abs,
            ReduceOp::Mean => (len * EPS * sum_abs) / len + EPS * sum_abs / len,
            ReduceOp::Max => 0.0,
        })
        .collect()
}

fn check(t: &Tensor, host: &[f32], axis: usize, op: ReduceOp, got: &Tensor, what: &str) {
    let want = reference::reduce(host, t.shape(), axis, op);
    let mut shape = t.shape().to_vec();
    shape.remove(axis);
    assert_eq!(got.shape(), shape.as_slice(), "{what}: shape");
    let tol = tolerance(host, t.shape(), axis, op);
    assert_close(what, &got.to_vec().unwrap(), &want, |i| tol[i]);
}

#[test]
fn every_variant_on_every_axis() {
    let gpu = gpu();
    for (s, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let host = random(n, 40 + s as u64);
        let t = Tensor::from_slice(&gpu, shape, &host).unwrap();
        for axis in 0..shape.len() {
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                for variant in ReduceVariant::ALL {
                    let got = t.reduce_with(axis, op, variant).unwrap();
                    check(
                        &t,
                        &host,
                        axis,
                        op,
                        &got,
                        &format!("{op:?} {} axis {axis} of {shape:?}", variant.name()),
                    );
                }
                let got = t.reduce(axis, op).unwrap();
                check(
                    &t,
                    &host,
                    axis,
                    op,
                    &got,
                    &format!("{op:?} autotuned axis {axis} of {shape:?}"),
                );
            }
        }
    }
}

#[test]
fn named_reductions() {
    let gpu = gpu();
    let t = Tensor::from_slice(&gpu, &[2, 3], &[1.0, -2.0, 3.0, 4.0, 5.0, -6.0]).unwrap();
    assert_eq!(t.sum(0).unwrap().to_vec().unwrap(), [5.0, 3.0, -3.0]);
    assert_eq!(t.sum(1).unwrap().to_vec().unwrap(), [2.0, 3.0]);
    assert_eq!(t.mean(0).unwrap().to_vec().unwrap(), [2.5, 1.5, -1.5]);
    assert_eq!(t.max(1).unwrap().to_vec().unwrap(), [3.0, 5.0]);
    let all = t.reshape(&[6]).unwrap().sum(0).unwrap();
    assert_eq!(all.shape(), &[] as &[usize]);
    assert_eq!(all.to_vec().unwrap(), [5.0]);
}

#[test]
fn more_outputs_than_one_dimension_of_workgroups() {
    let gpu = gpu();
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    // The tree variant runs a workgroup per output; the serial one 64 outputs per workgroup.
    for (variant, outputs) in [
        (ReduceVariant::Workgroup(64), max + 7),
        (ReduceVariant::Serial, 64 * (max + 1) + 5),
    ] {
        let shape = [outputs, 3];
        let host: Vec<f32> = (0..outputs * 3)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        let t = Tensor::from_slice(&gpu, &shape, &host).unwrap();
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            let got = t.reduce_with(1, op, variant).unwrap();
            check(
                &t,
                &host,
                1,
                op,
                &got,
                &format!("{op:?} {} over {outputs} outputs", variant.name()),
            );
        }
    }
}

#[test]
fn bad_axes_are_clear_errors() {
    let gpu = gpu();
    let t = Tensor::from_slice(&gpu, &[2, 3], &[0.0; 6]).unwrap();
    let err = t.sum(2).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains("axis 2"),
        "{err}"
    );
    let empty = Tensor::from_slice(&gpu, &[2, 0], &[]).unwrap();
    let err = empty.max(1).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
