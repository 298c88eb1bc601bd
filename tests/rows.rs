//! Row ops (softmax, log-softmax, L2 normalisation) and broadcasting along an axis, forward
//! and backward, against the CPU reference; the reference's gradients against finite
//! differences.

mod common;

use common::{assert_close, f64s, gpu, random};
use lim::Tensor;
use lim::ops::rows::{RowOp, reference};

const OPS: [RowOp; 3] = [RowOp::Softmax, RowOp::LogSoftmax, RowOp::L2Normalize];

/// One column, one row, odd and prime sizes, more rows than a workgroup, a 3-D tensor.
const SHAPES: &[&[usize]] = &[&[1, 1], &[1, 7], &[5, 1], &[13, 31], &[70, 5], &[2, 3, 4]];

#[test]
fn row_ops_and_their_gradients_match_the_reference() {
    let gpu = gpu();
    for (s, shape) in SHAPES.iter().enumerate() {
        let numel: usize = shape.iter().product();
        let n = *shape.last().unwrap();
        // Logits up to +-4, so exp() spreads over two orders of magnitude.
        let hx: Vec<f32> = random(numel, s as u64).iter().map(|v| 4.0 * v).collect();
        let hg = random(numel, 50 + s as u64);
        let x = Tensor::from_slice(&gpu, shape, &hx).unwrap();
        let g = Tensor::from_slice(&gpu, shape, &hg).unwrap();
        for op in OPS {
            let want = reference::rows(&f64s(&hx), n, op);
            let y = x.rows(op).unwrap();
            assert_eq!(y.shape(), *shape);
            // A few roundings of values at most log(n) + 8 in size.
            assert_close(
                &format!("{op:?} {shape:?}"),
                &y.to_vec().unwrap(),
                &want,
                |i| 1e-6 * (1.0 + want[i].abs()),
            );
            let saved = match op {
                RowOp::L2Normalize => &x,
                _ => &y,
            };
            let dx = g.rows_backward(saved, op).unwrap();
            let want = reference::rows_backward(&f64s(&hg), &f64s(&hx), n, op);
            // Sums of n products of values below ~1 (L2's are scaled by 1/||x||, >= 1/8 here).
            assert_close(
                &format!("{op:?} backward {shape:?}"),
                &dx.to_vec().unwrap(),
                &want,
                |_| 1e-5 * n as f64,
            );
        }
    }
}

#[test]
fn the_reference_gradients_match_finite_differences() {
    let (rows, n) = (3, 6);
    let x: Vec<f64> = random(rows * n, 7)
        .iter()
        .map(|&v| 3.0 * v as f64)
        .collect();
    let g: Vec<f64> = random(rows * n, 8).iter().map(|&v| v as f64).collect();
    for op in OPS {
        // d/dx of sum(g * op(x)) is what rows_backward gives.
        let f = |x: &[f64]| -> f64 {
            reference::rows(x, n, op)
                .iter()
                .zip(&g)
                .map(|(y, g)| y * g)
                .sum()
        };
        let analytic = reference::rows_backward(&g, &x, n, op);
        let h = 1e-6;
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (f(&up) - f(&down)) / (2.0 * h);
            assert!(
                (numeric - analytic[i]).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{op:?} element {i}: finite difference {numeric}, reference {}",
                analytic[i]
            );
        }
    }
}

#[test]
fn a_zero_row_normalises_to_zero_with_torchs_gradient() {
    let gpu = gpu();
    let x = Tensor::from_slice(&gpu, &[2, 3], &[0.0, 0.0, 0.0, 3.0, 0.0, 4.0]).unwrap();
    let g = Tensor::from_slice(&gpu, &[2, 3], &[1.0, 2.0, 3.0, 1.0, 1.0, 1.0]).unwrap();
    let y = x.rows(RowOp::L2Normalize).unwrap().to_vec().unwrap();
    assert_eq!(y, [0.0, 0.0, 0.0, 0.6, 0.0, 0.8]);
    let dx = g
        .rows_backward(&x, RowOp::L2Normalize)
        .unwrap()
        .to_vec()
        .unwrap();
    // torch: x / max(||x||, eps) has gradient g / eps where the norm is clamped.
    assert_eq!(&dx[..3], &[1e12, 2e12, 3e12]);
    let want = reference::rows_backward(&[1.0, 1.0, 1.0], &[3.0, 0.0, 4.0], 3, RowOp::L2Normalize);
    assert_close("second row", &dx[3..], &want, |_| 1e-7);
}

#[test]
fn expand_axis_matches_the_reference() {
    let gpu = gpu();
    for (shape, axis, len) in [
        (&[1usize][..], 0, 1),
        (&[5][..], 0, 3),
        (&[5][..], 1, 7),
        (&[2, 3][..], 1, 4),
        (&[][..], 0, 300),
        (&[3, 1, 2][..], 3, 5),
    ] {
        let numel: usize = shape.iter().product();
        let hx = random(numel, 3);
        let x = Tensor::from_slice(&gpu, shape, &hx).unwrap();
        let out = x.expand_axis(axis, len).unwrap();
        let mut want_shape = shape.to_vec();
        want_shape.insert(axis, len);
        assert_eq!(out.shape(), want_shape);
        let want = lim::ops::broadcast::reference::expand_axis(&f64s(&hx), shape, axis, len);
        assert_close(
            &format!("{shape:?} at {axis}"),
            &out.to_vec().unwrap(),
            &want,
            |_| 0.0,
        );
    }
    let x = Tensor::from_slice(&gpu, &[2], &[1.0, 2.0]).unwrap();
    assert!(x.expand_axis(2, 3).is_err());
}
