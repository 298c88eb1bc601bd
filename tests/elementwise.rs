//! Elementwise kernels against the CPU reference, on awkward sizes, on more than 65,535
//! workgroups, and on a tensor larger than one storage binding.

mod common;

use common::{EPS, assert_close, f64s, gpu, random};
use lim::ops::elementwise::{BinaryOp, UnaryOp, reference};
use lim::{DType, Error, Tensor};

/// 1, odd, prime, exactly one workgroup, one past it.
const SHAPES: &[&[usize]] = &[
    &[1],
    &[7],
    &[13],
    &[256],
    &[257],
    &[1009],
    &[3, 5, 7],
    &[2, 1, 128, 3],
];

/// One rounding of the exact result.
fn one_rounding(want: &[f64]) -> impl Fn(usize) -> f64 + '_ {
    move |i| want[i].abs() * EPS
}

#[test]
fn binary_ops_match_the_reference() {
    let gpu = gpu();
    for (s, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let (hx, hy) = (random(n, s as u64), random(n, 100 + s as u64));
        let x = Tensor::from_slice(&gpu, shape, &hx).unwrap();
        let y = Tensor::from_slice(&gpu, shape, &hy).unwrap();
        for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::ReluGrad] {
            let want = reference::binary(&f64s(&hx), &f64s(&hy), op);
            let out = x.binary(&y, op).unwrap();
            assert_eq!(out.shape(), *shape);
            assert_close(
                &format!("{op:?} {shape:?}"),
                &out.to_vec().unwrap(),
                &want,
                one_rounding(&want),
            );
            let inplace = x.deep_clone().unwrap();
            inplace.binary_(&y, op).unwrap();
            assert_close(
                &format!("{op:?}_ {shape:?}"),
                &inplace.to_vec().unwrap(),
                &want,
                one_rounding(&want),
            );
        }
        assert_eq!(x.to_vec().unwrap(), hx, "inputs are left alone");
    }
}

#[test]
fn unary_ops_match_the_reference() {
    let gpu = gpu();
    for (s, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let hx = random(n, 7 + s as u64);
        let x = Tensor::from_slice(&gpu, shape, &hx).unwrap();
        for op in [UnaryOp::Scale(-2.5), UnaryOp::Scale(0.1), UnaryOp::Relu] {
            let want = reference::unary(&f64s(&hx), op);
            assert_close(
                &format!("{op:?} {shape:?}"),
                &x.unary(op).unwrap().to_vec().unwrap(),
                &want,
                one_rounding(&want),
            );
            let inplace = x.deep_clone().unwrap();
            inplace.unary_(op).unwrap();
            assert_close(
                &format!("{op:?}_ {shape:?}"),
                &inplace.to_vec().unwrap(),
                &want,
                one_rounding(&want),
            );
        }
    }
}

#[test]
fn named_ops_and_in_place_aliasing() {
    let gpu = gpu();
    let h = [-1.5f32, 0.0, 2.0, 3.25, -0.5];
    let x = Tensor::from_slice(&gpu, &[5], &h).unwrap();
    assert_eq!(
        x.add(&x).unwrap().to_vec().unwrap(),
        [-3.0, 0.0, 4.0, 6.5, -1.0]
    );
    assert_eq!(
        x.mul(&x).unwrap().to_vec().unwrap(),
        [2.25, 0.0, 4.0, 10.5625, 0.25]
    );
    assert_eq!(
        x.scale(2.0).unwrap().to_vec().unwrap(),
        [-3.0, 0.0, 4.0, 6.5, -1.0]
    );
    assert_eq!(
        x.relu().unwrap().to_vec().unwrap(),
        [0.0, 0.0, 2.0, 3.25, 0.0]
    );

    // x += x reads and writes one buffer; clones share storage like PyTorch tensors.
    let shared = x.clone();
    x.add_(&shared).unwrap();
    assert_eq!(shared.to_vec().unwrap(), [-3.0, 0.0, 4.0, 6.5, -1.0]);
    x.mul_(&x).unwrap();
    assert_eq!(x.to_vec().unwrap(), [9.0, 0.0, 16.0, 42.25, 1.0]);
    x.scale_(0.5).unwrap();
    x.relu_().unwrap();
    assert_eq!(x.to_vec().unwrap(), [4.5, 0.0, 8.0, 21.125, 0.5]);
}

#[test]
fn more_workgroups_than_one_dimension_allows() {
    let gpu = gpu();
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    let n = (max + 2) * 256 + 3;
    let hx: Vec<f32> = (0..n).map(|i| (i % 1013) as f32 - 500.0).collect();
    let hy: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.5).collect();
    let x = Tensor::from_slice(&gpu, &[n], &hx).unwrap();
    let y = Tensor::from_slice(&gpu, &[n], &hy).unwrap();
    let want = reference::binary(&f64s(&hx), &f64s(&hy), BinaryOp::Add);
    assert_close(
        "add past 65,535 workgroups",
        &x.add(&y).unwrap().to_vec().unwrap(),
        &want,
        one_rounding(&want),
    );
    x.relu_().unwrap();
    let want = reference::unary(&f64s(&hx), UnaryOp::Relu);
    assert_close(
        "relu_ past 65,535 workgroups",
        &x.to_vec().unwrap(),
        &want,
        |_| 0.0,
    );
}

#[test]
fn tensors_larger_than_one_binding_are_processed_in_chunks() {
    let gpu = gpu();
    let n = gpu.limits().max_storage_buffer_binding_size as usize / 4 + 1000;
    let hx: Vec<f32> = (0..n).map(|i| (i % 4099) as f32).collect();
    let x = Tensor::from_slice(&gpu, &[n], &hx).unwrap();
    let y = x.scale(2.0).unwrap();
    y.add_(&x).unwrap();
    let got = y.to_vec().unwrap();
    let wrong = got.iter().zip(&hx).position(|(g, h)| *g != 3.0 * h);
    assert_eq!(wrong, None, "3x at element {wrong:?} of {n}");
}

#[test]
fn bad_operands_are_clear_errors() {
    let gpu = gpu();
    let a = Tensor::from_slice(&gpu, &[2, 3], &[0.0; 6]).unwrap();
    let b = Tensor::from_slice(&gpu, &[3, 2], &[0.0; 6]).unwrap();
    let err = a.add(&b).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("[2, 3]") && err.to_string().contains("[3, 2]"),
        "{err}"
    );
    if gpu.features().contains(wgpu::Features::SHADER_F16) {
        let h = a.cast(DType::F16).unwrap();
        let err = h.relu().unwrap_err();
        assert!(matches!(err, Error::DType { .. }), "{err}");
    }
    let err = Tensor::from_slice(&gpu, &[2, 2], &[1.0; 3]).unwrap_err();
    assert!(err.to_string().contains("4 elements but 3"), "{err}");
}
