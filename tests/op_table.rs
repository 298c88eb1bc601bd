//! The op table, in the spirit of tinygrad's `helper_test_op`: each row names an op, its input
//! shapes (awkward ones: single elements, primes, more than a workgroup), its CPU reference in
//! f64 and its tolerance. One harness runs every row: the GPU forward against the reference,
//! and, for a differentiable op, every input's gradient (of a random weighting of the output)
//! against central finite differences of the reference. Every autograd op has a row, and every
//! CPU reference in the library has a caller in the tests, or a test here fails.

mod common;

use common::{f64s, gpu, random};
use lim::Tensor;
use lim::autograd::{Op, Var};
use lim::ops::batchnorm::{EPS, reference as batchnorm};
use lim::ops::conv2d::{Conv2dDims, Conv2dSpec, reference as conv2d};
use lim::ops::elementwise::{BinaryOp, UnaryOp, reference as elementwise};
use lim::ops::matmul::{MatmulDims, MatmulOptions, reference as matmul};
use lim::ops::pool::{PoolSpec, reference as pool};
use lim::ops::reduce::{ReduceOp, ReduceVariant, reference as reduce};
use lim::ops::rows::{RowOp, reference as rows};

type Forward = Box<dyn Fn(&[Var]) -> lim::Result<Var>>;
type Reference = Box<dyn Fn(&[Vec<f64>]) -> Vec<f64>>;

struct Row {
    what: String,
    /// The autograd op the output comes from; `None` for a tensor op without a gradient,
    /// whose forward alone is checked.
    op: Option<Op>,
    shapes: Vec<Vec<usize>>,
    forward: Forward,
    reference: Reference,
    /// Of the forward, relative to max(1, |want|); gradients (f32 sums of products against
    /// finite differences) get 100x.
    tol: f64,
}

fn row(
    what: impl Into<String>,
    op: Option<Op>,
    shapes: &[&[usize]],
    forward: impl Fn(&[Var]) -> lim::Result<Var> + 'static,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64> + 'static,
) -> Row {
    Row {
        what: what.into(),
        op,
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        forward: Box::new(forward),
        reference: Box::new(reference),
        tol: 1e-5,
    }
}

const T: MatmulOptions = MatmulOptions {
    trans_a: false,
    trans_b: false,
};

fn table() -> Vec<Row> {
    let mut t = Vec::new();
    let binary = |op| move |x: &[Vec<f64>]| elementwise::binary(&x[0], &x[1], op);
    for shape in [&[1][..], &[7, 13], &[2, 3, 5]] {
        t.push(row(
            format!("add {shape:?}"),
            Some(Op::Add),
            &[shape, shape],
            |x| x[0].add(&x[1]),
            binary(BinaryOp::Add),
        ));
        t.push(row(
            format!("mul {shape:?}"),
            Some(Op::Mul),
            &[shape, shape],
            |x| x[0].mul(&x[1]),
            binary(BinaryOp::Mul),
        ));
        t.push(row(
            format!("scale {shape:?}"),
            Some(Op::Scale),
            &[shape],
            |x| x[0].scale(-2.5),
            |x| elementwise::unary(&x[0], UnaryOp::Scale(-2.5)),
        ));
        t.push(row(
            format!("relu {shape:?}"),
            Some(Op::Relu),
            &[shape],
            |x| x[0].relu(),
            |x| elementwise::unary(&x[0], UnaryOp::Relu),
        ));
        t.push(row(
            format!("reshape {shape:?}"),
            Some(Op::Reshape),
            &[shape],
            |x| x[0].reshape(&[x[0].value().numel()]),
            |x| x[0].clone(),
        ));
    }
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let opts = MatmulOptions { trans_a, trans_b };
        let (m, k, n) = (5, 7, 3);
        let a: &[usize] = if trans_a { &[k, m] } else { &[m, k] };
        let b: &[usize] = if trans_b { &[n, k] } else { &[k, n] };
        let dims = MatmulDims::infer(a, b, opts).unwrap();
        t.push(row(
            format!("matmul {opts:?}"),
            Some(Op::Matmul),
            &[a, b],
            move |x| x[0].matmul_t(&x[1], opts),
            move |x| matmul::matmul(&x[0], &x[1], &dims).0,
        ));
    }
    let dims = MatmulDims::infer(&[1, 1], &[1, 1], T).unwrap();
    t.push(row(
        "matmul 1x1x1",
        Some(Op::Matmul),
        &[&[1, 1], &[1, 1]],
        |x| x[0].matmul(&x[1]),
        move |x| matmul::matmul(&x[0], &x[1], &dims).0,
    ));
    for (rows_, cols) in [(1, 1), (6, 5)] {
        t.push(row(
            format!("add_bias [{rows_}, {cols}]"),
            Some(Op::AddBias),
            &[&[rows_, cols], &[cols]],
            |x| x[0].add_bias(&x[1]),
            move |x| {
                (0..rows_ * cols)
                    .map(|i| x[0][i] + x[1][i % cols])
                    .collect()
            },
        ));
    }
    for (x_shape, w_shape, spec) in [
        ([2, 3, 7, 5], [4, 3, 3, 2], Conv2dSpec::new(2, 1)),
        ([1, 2, 6, 6], [3, 2, 1, 1], Conv2dSpec::new(1, 0)),
        (
            [1, 1, 9, 8],
            [2, 1, 3, 3],
            Conv2dSpec {
                dilation: [2, 1],
                ..Conv2dSpec::new(1, 2)
            },
        ),
    ] {
        let d = Conv2dDims::infer(&x_shape, &w_shape, spec).unwrap();
        t.push(row(
            format!("conv2d {x_shape:?} * {w_shape:?} {spec:?}"),
            Some(Op::Conv2d),
            &[&x_shape, &w_shape],
            move |x| x[0].conv2d(&x[1], None, spec),
            move |x| conv2d::forward(&x[0], &x[1], &d),
        ));
    }
    t.push(row(
        "add_channel_bias [2, 3, 4, 5]",
        Some(Op::AddChannelBias),
        &[&[2, 3, 4, 5], &[3]],
        |x| x[0].add_channel_bias(&x[1]),
        |x| (0..120).map(|i| x[0][i] + x[1][(i / 20) % 3]).collect(),
    ));
    for (shape, c, s) in [(&[4, 3][..], 3, 1), (&[3, 2, 5, 3][..], 2, 15)] {
        let shape_ = shape.to_vec();
        t.push(row(
            format!("batch_norm (training) {shape:?}"),
            Some(Op::BatchNorm),
            &[shape, &[c], &[c]],
            move |x| {
                let gpu = x[0].value().gpu();
                let mean = Tensor::zeros(gpu, &[c], lim::DType::F32)?;
                let var = Tensor::from_slice(gpu, &[c], &vec![1.0; c])?;
                x[0].batch_norm(&x[1], &x[2], &mean, &var, true, false)
            },
            move |x| {
                let n = shape_[0];
                let stats = batchnorm::stats(&x[0], n, c, s);
                batchnorm::apply(&x[0], &stats, &x[1], &x[2], c, s, EPS as f64)
            },
        ));
    }
    for (shape, spec) in [
        ([2, 3, 7, 6], PoolSpec::RESNET),
        (
            [1, 1, 5, 5],
            PoolSpec {
                k: 2,
                stride: 2,
                padding: 0,
            },
        ),
    ] {
        t.push(row(
            format!("max_pool2d {shape:?} {spec:?}"),
            Some(Op::MaxPool2d),
            &[&shape],
            move |x| x[0].max_pool2d(spec),
            move |x| pool::max_pool2d(&x[0], shape, spec).0,
        ));
    }
    t.push(row(
        "slice_batch [5, 3] 1..4",
        Some(Op::SliceBatch),
        &[&[5, 3]],
        |x| x[0].slice_batch(1, 3),
        |x| x[0][3..12].to_vec(),
    ));
    t.push(row(
        "concat_batch [2, 3] [1, 3] [4, 3]",
        Some(Op::ConcatBatch),
        &[&[2, 3], &[1, 3], &[4, 3]],
        |x| Var::concat_batch(&[&x[0], &x[1], &x[2]]),
        |x| x.concat(),
    ));
    for (shape, axis) in [
        (&[1][..], 0),
        (&[300][..], 0),
        (&[3, 5, 7][..], 1),
        (&[7, 3][..], 1),
    ] {
        let shape_ = shape.to_vec();
        t.push(row(
            format!("sum {shape:?} axis {axis}"),
            Some(Op::Sum),
            &[shape],
            move |x| x[0].sum(axis),
            move |x| reduce::reduce(&x[0], &shape_, axis, ReduceOp::Sum),
        ));
        let shape_ = shape.to_vec();
        t.push(row(
            format!("mean {shape:?} axis {axis}"),
            Some(Op::Mean),
            &[shape],
            move |x| x[0].mean(axis),
            move |x| reduce::reduce(&x[0], &shape_, axis, ReduceOp::Mean),
        ));
    }
    // Every reduction kernel variant, forward only (max has no gradient rule).
    for variant in ReduceVariant::ALL {
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            for (shape, axis) in [
                (&[1][..], 0),
                (&[1000][..], 0),
                (&[2, 1, 3][..], 1),
                (&[3, 300][..], 1),
                (&[257, 2][..], 0),
            ] {
                let shape_ = shape.to_vec();
                let mut r = row(
                    format!("reduce {op:?} {} {shape:?} axis {axis}", variant.name()),
                    None,
                    &[shape],
                    move |x| Ok(Var::constant(x[0].value().reduce_with(axis, op, variant)?)),
                    move |x| reduce::reduce(&x[0], &shape_, axis, op),
                );
                r.tol = 1e-5 * (shape[axis] as f64).sqrt().max(1.0);
                t.push(r);
            }
        }
    }
    for (op, node) in [
        (RowOp::Softmax, Op::Softmax),
        (RowOp::LogSoftmax, Op::LogSoftmax),
        (RowOp::L2Normalize, Op::L2Normalize),
    ] {
        for shape in [[1, 1], [4, 7], [2, 300]] {
            let n = shape[1];
            t.push(row(
                format!("{} {shape:?}", node.name()),
                Some(node),
                &[&shape],
                move |x| match op {
                    RowOp::Softmax => x[0].softmax(),
                    RowOp::LogSoftmax => x[0].log_softmax(),
                    RowOp::L2Normalize => x[0].l2_normalize(),
                },
                move |x| rows::rows(&x[0], n, op),
            ));
        }
    }
    t
}

/// Central differences of `f` at `x`.
fn finite_differences(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    const H: f64 = 1e-6;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = x[i];
            x[i] = v + H;
            let up = f(&x);
            x[i] = v - H;
            let down = f(&x);
            x[i] = v;
            (up - down) / (2.0 * H)
        })
        .collect()
}

fn check(what: &str, got: &[f32], want: &[f64], tol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if (g as f64 - w).abs() > tol * w.abs().max(1.0) {
            return Err(format!("{what}: element {i} is {g}, want {w}"));
        }
    }
    Ok(())
}

fn run(row: &Row, seed: u64, gpu: &std::sync::Arc<lim::Gpu>) -> Result<(), String> {
    let hosts: Vec<Vec<f32>> = row
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| random(s.iter().product(), seed * 16 + i as u64))
        .collect();
    let inputs: Vec<Var> = row
        .shapes
        .iter()
        .zip(&hosts)
        .map(|(s, h)| {
            let t = Tensor::from_slice(gpu, s, h).unwrap();
            match row.op {
                Some(_) => Var::param(t),
                None => Var::constant(t),
            }
        })
        .collect();
    let values: Vec<Vec<f64>> = hosts.iter().map(|h| f64s(h)).collect();
    let out = (row.forward)(&inputs).map_err(|e| format!("{}: {e}", row.what))?;
    let want = (row.reference)(&values);
    check(
        &format!("{} forward", row.what),
        &out.value().to_vec().unwrap(),
        &want,
        row.tol,
    )?;
    let Some(op) = row.op else {
        return Ok(());
    };
    if out.op() != Some(op) {
        return Err(format!(
            "{}: the output comes from {:?}, not {op:?}",
            row.what,
            out.op()
        ));
    }
    // The gradient of sum(weights * out), weights random, against the reference's.
    let weights = random(want.len(), seed * 16 + 15);
    let w = Var::constant(Tensor::from_slice(gpu, out.shape(), &weights).unwrap());
    out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    let weights = f64s(&weights);
    for (i, input) in inputs.iter().enumerate() {
        let weighted = |x: &[f64]| {
            let mut v = values.clone();
            v[i] = x.to_vec();
            (row.reference)(&v)
                .iter()
                .zip(&weights)
                .map(|(a, b)| a * b)
                .sum()
        };
        let want = finite_differences(weighted, &values[i]);
        let got = input
            .grad()
            .ok_or(format!("{}: no gradient for input {i}", row.what))?;
        check(
            &format!("{} gradient of input {i}", row.what),
            &got.to_vec().unwrap(),
            &want,
            row.tol * 1e2,
        )?;
    }
    Ok(())
}

#[test]
fn every_row_matches_its_reference_forward_and_backward() {
    let gpu = gpu();
    let table = table();
    let failures: Vec<String> = table
        .iter()
        .enumerate()
        .filter_map(|(k, row)| run(row, k as u64, &gpu).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_autograd_op_has_a_row() {
    let table = table();
    let missing: Vec<&str> = Op::ALL
        .iter()
        .filter(|op| !table.iter().any(|r| r.op == Some(**op)))
        .map(|op| op.name())
        .collect();
    assert!(missing.is_empty(), "ops without a row: {missing:?}");
}

/// Every `pub fn` of a `pub mod reference` in `src/` is called by some test, as
/// `reference::NAME(` or, imported `reference as <file stem>`, `<file stem>::NAME(`: a
/// reference nothing calls checks nothing.
#[test]
fn every_reference_has_a_caller() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read_all = |dir: &str| -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push((
                        p.display().to_string(),
                        std::fs::read_to_string(&p).unwrap(),
                    ));
                }
            }
        }
        out
    };
    let tests: String = read_all("tests").into_iter().map(|(_, s)| s).collect();
    let mut uncalled = Vec::new();
    let mut found = 0;
    for (path, source) in read_all("src") {
        let Some(start) = source.find("pub mod reference {") else {
            continue;
        };
        for line in source[start..].lines() {
            let Some(rest) = line.trim_start().strip_prefix("pub fn ") else {
                continue;
            };
            let name = &rest[..rest.find(['(', '<']).unwrap()];
            found += 1;
            let module = path.rsplit('/').next().unwrap().trim_end_matches(".rs");
            let called = tests.contains(&format!("reference::{name}("))
                || tests.contains(&format!("{module}::{name}("));
            if !called {
                uncalled.push(format!("{path}: reference::{name}"));
            }
        }
    }
    assert!(found >= 20, "only {found} references found");
    assert!(
        uncalled.is_empty(),
        "references no test calls: {uncalled:?}"
    );
}
