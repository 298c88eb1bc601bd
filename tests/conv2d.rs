//! conv2d forward and both gradients, every variant, against the CPU reference on awkward
//! shapes (1 x 1 images, odd and prime sizes, strides, padding, dilation, pointwise and
//! strided 1 x 1, a 7 x 7 stem, more than 65,535 workgroups); the reference's gradients
//! against finite differences; the autograd op against PyTorch's Conv2d (golden values in
//! tests/fixtures/torch).

mod common;

use common::{Golden, assert_close, assert_relative, f64s, gpu, random};
use lim::autograd::Var;
use lim::ops::conv2d::{ColumnLayout, Conv2dDims, Conv2dSpec, ConvVariant, reference};
use lim::{DType, Tensor};

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    spec: Conv2dSpec,
}

fn case(x: [usize; 4], w: [usize; 4], stride: usize, padding: usize, dilation: usize) -> Case {
    Case {
        x,
        w,
        spec: Conv2dSpec {
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [dilation; 2],
        },
    }
}

fn cases() -> Vec<Case> {
    vec![
        case([1, 1, 1, 1], [1, 1, 1, 1], 1, 0, 1),
        case([2, 3, 7, 5], [4, 3, 3, 3], 1, 1, 1),
        case([1, 2, 9, 9], [3, 2, 3, 3], 2, 1, 1),
        case([2, 3, 11, 8], [5, 3, 7, 7], 2, 3, 1),
        case([3, 4, 6, 6], [8, 4, 1, 1], 1, 0, 1),
        case([2, 4, 7, 7], [6, 4, 1, 1], 2, 0, 1),
        case([1, 2, 9, 7], [3, 2, 3, 3], 1, 2, 2),
        case([2, 5, 13, 3], [2, 5, 2, 3], 3, 0, 1),
        Case {
            x: [1, 2, 8, 9],
            w: [3, 2, 3, 2],
            spec: Conv2dSpec {
                stride: [2, 1],
                padding: [0, 1],
                dilation: [1, 2],
            },
        },
    ]
}

/// Every pass of every variant in `variants`, and the autotuned forward, with operands in
/// `operands`, against the reference on the operands as stored (rounded to f16 for f16:
/// products of f16 values are exact in f32, so the f32 bounds hold for both).
fn check_every_pass(operands: DType, variants: &[ConvVariant]) {
    let gpu = gpu();
    let stored = |v: Vec<f32>| -> Vec<f64> {
        v.into_iter()
            .map(|x| match operands {
                DType::F32 => x as f64,
                DType::F16 => half::f16::from_f32(x).to_f64(),
            })
            .collect()
    };
    for (k, c) in cases().iter().enumerate() {
        let d = Conv2dDims::infer(&c.x, &c.w, c.spec).unwrap();
        let (hx, hw) = (
            random(c.x.iter().product(), k as u64),
            random(c.w.iter().product(), 40 + k as u64),
        );
        let hg = random(d.out_shape().iter().product(), 80 + k as u64);
        let x = Tensor::from_slice(&gpu, &c.x, &hx).unwrap();
        let w = Tensor::from_slice(&gpu, &c.w, &hw).unwrap();
        let g = Tensor::from_slice(&gpu, &d.out_shape(), &hg).unwrap();
        let (sx, sw, sg) = (stored(hx), stored(hw), stored(hg));
        let want_y = reference::forward(&sx, &sw, &d);
        let want_dx = reference::backward_input(&sg, &sw, &d);
        let want_dw = reference::backward_weight(&sg, &sx, &d);
        // Sums of that many products of values in [-1, 1].
        let terms =
            [d.c * d.kh * d.kw, d.o * d.kh * d.kw, d.n * d.oh * d.ow].map(|t| 1e-6 * t as f64);
        for &v in variants {
            let what = |pass: &str| {
                format!(
                    "{pass} {} {operands:?} {:?} w {:?} {:?}",
                    v.name(),
                    c.x,
                    c.w,
                    c.spec
                )
            };
            let y = x.conv2d_with(&w, c.spec, v, operands).unwrap();
            assert_eq!((y.shape(), y.dtype()), (&d.out_shape()[..], DType::F32));
            assert_close(&what("forward"), &y.to_vec().unwrap(), &want_y, |_| {
                terms[0]
            });
            let dx = g
                .conv2d_backward_input_with(&w, &c.x, c.spec, v, operands)
                .unwrap();
            assert_eq!(dx.shape(), c.x);
            assert_close(
                &what("input gradient"),
                &dx.to_vec().unwrap(),
                &want_dx,
                |_| terms[1],
            );
            let dw = g
                .conv2d_backward_weight_with(&x, &c.w, c.spec, v, operands)
                .unwrap();
            assert_eq!(dw.shape(), c.w);
            assert_close(
                &what("weight gradient"),
                &dw.to_vec().unwrap(),
                &want_dw,
                |_| terms[2],
            );
        }
        // The autotuned entry points agree too.
        assert_close(
            &format!("tuned {operands:?} {:?}", c.x),
            &match operands {
                DType::F32 => x.conv2d(&w, c.spec),
                DType::F16 => x.conv2d_in(&w, c.spec, operands),
            }
            .unwrap()
            .to_vec()
            .unwrap(),
            &want_y,
            |_| terms[0],
        );
    }
}

#[test]
fn every_variant_and_pass_matches_the_reference() {
    check_every_pass(DType::F32, &ConvVariant::ALL);
}

/// Mixed precision: the GEMM routes take f16 operands; the direct route refuses them.
#[test]
fn f16_operands_match_the_reference_on_rounded_inputs() {
    check_every_pass(DType::F16, &[ConvVariant::Gemm, ConvVariant::GemmBatch]);
    let gpu = gpu();
    let x = Tensor::from_slice(&gpu, &[1, 1, 3, 3], &[0.5; 9]).unwrap();
    let w = Tensor::from_slice(&gpu, &[1, 1, 3, 3], &[0.5; 9]).unwrap();
    let err = x
        .conv2d_with(&w, Conv2dSpec::default(), ConvVariant::Direct, DType::F16)
        .unwrap_err();
    assert!(err.to_string().contains("f32 operands only"), "{err}");
}

/// The GEMM route's im2col and col2im in both layouts and both orders, against the
/// reference (im2col copies, so exactly), on every awkward shape, planes wider than a tile
/// and tiles cut at the edges.
#[test]
fn im2col_and_col2im_match_the_reference_in_every_layout() {
    let gpu = gpu();
    let mut all = cases();
    all.push(case([2, 3, 19, 21], [2, 3, 3, 3], 1, 1, 1));
    for (k, c) in all.iter().enumerate() {
        let d = Conv2dDims::infer(&c.x, &c.w, c.spec).unwrap();
        let xv = random(c.x.iter().product(), 50 + k as u64);
        let x = Tensor::from_slice(&gpu, &c.x, &xv).unwrap();
        for tap_major in [false, true] {
            let want = reference::im2col(&f64s(&xv), &d, tap_major);
            let gv = random(want.len(), 70 + k as u64);
            let g = Tensor::from_slice(&gpu, &[want.len()], &gv).unwrap();
            let want_dx = reference::col2im(&f64s(&gv), &d, tap_major);
            for layout in ColumnLayout::ALL {
                let what = format!("{:?} {:?}, tap-major {tap_major}, {layout:?}", c.x, c.w);
                let cols = x.im2col_with(&c.w, c.spec, tap_major, layout).unwrap();
                assert_close(
                    &format!("im2col {what}"),
                    &cols.to_vec().unwrap(),
                    &want,
                    |_| 0.0,
                );
                let dx = g
                    .col2im_with(&c.x, &c.w, c.spec, tap_major, layout)
                    .unwrap();
                assert_eq!(dx.shape(), c.x);
                assert_close(
                    &format!("col2im {what}"),
                    &dx.to_vec().unwrap(),
                    &want_dx,
                    |i| 1e-6 * (1.0 + want_dx[i].abs()),
                );
            }
        }
    }
}

#[test]
fn more_outputs_than_65535_workgroups() {
    let gpu = gpu();
    let side = 4100;
    let hx = random(side * side, 9);
    let x = Tensor::from_slice(&gpu, &[1, 1, side, side], &hx).unwrap();
    let w = Tensor::from_slice(&gpu, &[1, 1, 1, 1], &[-2.0]).unwrap();
    // The direct entries index the 2-D grid themselves (the GEMM route's matmul is tested
    // on such grids in tests/matmul.rs).
    let direct = ConvVariant::Direct;
    let spec = Conv2dSpec::default();
    let y = x.conv2d_with(&w, spec, direct, DType::F32).unwrap();
    let dx = y
        .conv2d_backward_input_with(&w, x.shape(), spec, direct, DType::F32)
        .unwrap();
    let [y, dx] = [y, dx].map(|t| t.to_vec().unwrap());
    assert_eq!(
        y.iter().zip(&hx).position(|(a, b)| *a != -2.0 * b),
        None,
        "forward"
    );
    assert_eq!(
        dx.iter().zip(&hx).position(|(a, b)| *a != 4.0 * b),
        None,
        "input gradient"
    );
}

#[test]
fn the_reference_gradients_match_finite_differences() {
    let c = case([2, 2, 5, 4], [3, 2, 3, 2], 2, 1, 1);
    let d = Conv2dDims::infer(&c.x, &c.w, c.spec).unwrap();
    let x = f64s(&random(c.x.iter().product(), 1));
    let w = f64s(&random(c.w.iter().product(), 2));
    let g = f64s(&random(d.out_shape().iter().product(), 3));
    let f = |x: &[f64], w: &[f64]| -> f64 {
        reference::forward(x, w, &d)
            .iter()
            .zip(&g)
            .map(|(a, b)| a * b)
            .sum()
    };
    let h = 1e-6;
    let check = |what: &str, at: &[f64], analytic: &[f64], eval: &dyn Fn(&[f64]) -> f64| {
        for i in 0..at.len() {
            let (mut up, mut down) = (at.to_vec(), at.to_vec());
            up[i] += h;
            down[i] -= h;
            let numeric = (eval(&up) - eval(&down)) / (2.0 * h);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "{what}[{i}]: {numeric} vs {}",
                analytic[i]
            );
        }
    };
    check("dx", &x, &reference::backward_input(&g, &w, &d), &|x| {
        f(x, &w)
    });
    check("dw", &w, &reference::backward_weight(&g, &x, &d), &|w| {
        f(&x, w)
    });
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let gpu = gpu();
    let x = Tensor::from_slice(&gpu, &[1, 2, 3, 3], &[0.0; 18]).unwrap();
    let w = Tensor::from_slice(&gpu, &[1, 3, 3, 3], &[0.0; 27]).unwrap();
    assert!(
        x.conv2d(&w, Conv2dSpec::default())
            .unwrap_err()
            .to_string()
            .contains("channels")
    );
    let w = Tensor::from_slice(&gpu, &[1, 2, 5, 5], &[0.0; 50]).unwrap();
    assert!(
        x.conv2d(&w, Conv2dSpec::default())
            .unwrap_err()
            .to_string()
            .contains("does not fit")
    );
    assert!(
        x.conv2d(&w, Conv2dSpec::new(1, 1)).is_ok(),
        "padding makes it fit"
    );
    assert!(x.conv2d(&w, Conv2dSpec::new(0, 1)).is_err(), "stride 0");
}

/// On a device that binds at most 64 KiB, the im2col columns of this batch (19 KiB per
/// image) exceed a binding, so every pass of every variant goes through in chunks of the
/// batch; each equals the reference.
#[test]
fn a_batch_too_large_for_one_binding_is_split() {
    const LIMIT: u64 = 64 << 10;
    let gpu = common::gpu_binding_at_most(LIMIT);
    let (x_shape, w_shape) = ([6, 5, 9, 11], [4, 5, 3, 3]);
    let spec = Conv2dSpec::new(1, 1);
    let d = Conv2dDims::infer(&x_shape, &w_shape, spec).unwrap();
    // 45 taps, padded to 48 for the GEMM route, by 99 pixels, per image.
    assert!((6 * 48 * 99 * 4) as u64 > LIMIT);
    let hx = random(x_shape.iter().product(), 1);
    let hw = random(w_shape.iter().product(), 2);
    let hg = random(d.out_shape().iter().product(), 3);
    let x = Tensor::from_slice(&gpu, &x_shape, &hx).unwrap();
    let w = Tensor::from_slice(&gpu, &w_shape, &hw).unwrap();
    let g = Tensor::from_slice(&gpu, &d.out_shape(), &hg).unwrap();
    let want_y = reference::forward(&f64s(&hx), &f64s(&hw), &d);
    let want_dx = reference::backward_input(&f64s(&hg), &f64s(&hw), &d);
    let want_dw = reference::backward_weight(&f64s(&hg), &f64s(&hx), &d);
    for variant in ConvVariant::ALL {
        let y = x.conv2d_with(&w, spec, variant, DType::F32).unwrap();
        let dx = g
            .conv2d_backward_input_with(&w, &x_shape, spec, variant, DType::F32)
            .unwrap();
        let dw = g
            .conv2d_backward_weight_with(&x, &w_shape, spec, variant, DType::F32)
            .unwrap();
        for (what, got, want) in [
            ("forward", y, &want_y),
            ("input gradient", dx, &want_dx),
            ("weight gradient", dw, &want_dw),
        ] {
            assert_close(
                &format!("split {what}, {variant:?}"),
                &got.to_vec().unwrap(),
                want,
                |_| 1e-4,
            );
        }
    }
}

#[test]
fn batches_slice_and_concatenate() {
    let gpu = gpu();
    let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let t = Tensor::from_slice(&gpu, &[4, 3, 2], &data).unwrap();
    let (a, b) = (t.slice_batch(0, 1).unwrap(), t.slice_batch(1, 3).unwrap());
    assert_eq!(a.shape(), [1, 3, 2]);
    assert_eq!(b.to_vec().unwrap(), data[6..]);
    let back = Tensor::concat_batch(&[&b, &a]).unwrap();
    assert_eq!(back.shape(), [4, 3, 2]);
    assert_eq!(back.to_vec().unwrap(), [&data[6..], &data[..6]].concat());
    assert!(t.slice_batch(3, 2).is_err());
    let other = Tensor::from_slice(&gpu, &[1, 2, 3], &data[..6]).unwrap();
    assert!(Tensor::concat_batch(&[&t, &other]).is_err());
}

/// The autograd op, as a network calls it, against `nn.Conv2d`'s forward and gradients
/// (torch_ref.py conv): the stem, a dilated 3 x 3 with bias, a strided 1 x 1, an odd 3 x 3.
#[test]
fn forward_and_gradients_equal_pytorchs() {
    let gpu = gpu();
    for name in [
        "conv_stem",
        "conv_dilated_bias",
        "conv_pointwise_strided",
        "conv_3x3_bias",
    ] {
        let golden = Golden::open(&format!("torch/{name}.safetensors"));
        let load = |key: &str| golden.upload(&gpu, key);
        let x = Var::param(load("x"));
        let weight = Var::param(load("weight"));
        let bias = golden.has("bias").then(|| Var::param(load("bias")));
        let spec = Conv2dSpec {
            stride: [golden.meta("stride") as usize; 2],
            padding: [golden.meta("padding") as usize; 2],
            dilation: [golden.meta("dilation") as usize; 2],
        };
        let y = x.conv2d(&weight, bias.as_ref(), spec).unwrap();
        // A loss whose gradient with respect to y is PyTorch's grad_out.
        let grad_out = Var::constant(load("grad_out"));
        y.mul(&grad_out)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let check = |what: &str, got: &Tensor| {
            assert_relative(
                &format!("{name} {what}"),
                &got.to_vec().unwrap(),
                &golden.values(what),
                1e-5,
            );
        };
        check("y", y.value());
        check("grad_x", &x.grad().unwrap());
        check("grad_weight", &weight.grad().unwrap());
        if let Some(bias) = &bias {
            check("grad_bias", &bias.grad().unwrap());
        }
    }
}
