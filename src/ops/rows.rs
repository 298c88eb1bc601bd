//! Functions of each row of a matrix (`shaders/rows.wgsl`): softmax, log-softmax and L2
//! normalisation along the last axis, and their gradients.

use crate::error::{Error, Result};
use crate::gpu::shader;
use crate::ops::windows;
use crate::tensor::{DType, Tensor};
use crate::uniform;

/// A row function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOp {
    Softmax,
    LogSoftmax,
    /// `x / max(||x||, 1e-12)`, as `torch.nn.functional.normalize`.
    L2Normalize,
}

/// The floor `torch.nn.functional.normalize` puts under the norm.
pub const NORM_EPS: f64 = 1e-12;

impl RowOp {
    /// Its name, which is also its kernel's entry point.
    pub fn name(self) -> &'static str {
        match self {
            RowOp::Softmax => "softmax",
            RowOp::LogSoftmax => "log_softmax",
            RowOp::L2Normalize => "l2_normalize",
        }
    }

    fn backward_entry(self) -> &'static str {
        match self {
            RowOp::Softmax => "softmax_backward",
            RowOp::LogSoftmax => "log_softmax_backward",
            RowOp::L2Normalize => "l2_normalize_backward",
        }
    }
}

uniform! {
    pub(crate) struct Params for [shader::ROWS] {
        rows: u32,
        n: u32,
        base: u32,
    }
}

/// `[rows, n]` of a tensor seen as rows along its last axis.
fn rows_of(t: &Tensor) -> Result<(usize, usize)> {
    t.expect_dtype("row op", DType::F32)?;
    match t.shape().last() {
        Some(&n) if n > 0 => Ok((t.numel() / n, n)),
        _ => Err(Error::InvalidArgument {
            op: "row op",
            why: format!(
                "needs a non-empty last axis of f32, got {:?} {:?}",
                t.dtype(),
                t.shape()
            ),
        }),
    }
}

/// Runs `entry` per row window: `inputs` bind to `a` (and `g`, the gradient), the result to `out`.
fn launch(entry: &str, inputs: &[&Tensor]) -> Result<Tensor> {
    let first = inputs[0];
    let (rows, n) = rows_of(first)?;
    let out = Tensor::uninit(first.gpu(), first.shape(), DType::F32)?;
    let gpu = first.gpu();
    let kernel = gpu.kernel(&shader::ROWS, entry, &[])?;
    for window in windows(gpu, "row", rows, &[n])? {
        let bindings: Vec<_> = ["a", "g"]
            .into_iter()
            .zip(inputs)
            .chain([("out", &&out)])
            .map(|(slot, t)| (slot, window.binding(0, t.buffer())))
            .collect();
        let params = Params {
            rows: window.count as u32,
            n: n as u32,
            base: window.base[0],
        };
        let groups = gpu.grid_1d(window.count.div_ceil(64) as u64, &kernel.label)?;
        gpu.dispatch(&kernel, &params, &bindings, groups)?;
    }
    Ok(out)
}

impl Tensor {
    /// `op` applied to each row along the last axis.
    pub fn rows(&self, op: RowOp) -> Result<Tensor> {
        launch(op.name(), &[self])
    }

    /// The gradient of [`Tensor::rows`] from the output gradient `self`: `saved` is the
    /// output for softmax and log-softmax and the input for L2 normalisation.
    pub fn rows_backward(&self, saved: &Tensor, op: RowOp) -> Result<Tensor> {
        let grad = self;
        if saved.shape() != grad.shape() {
            return Err(Error::ShapeMismatch {
                op: "row op backward",
                lhs: saved.shape().to_vec(),
                rhs: grad.shape().to_vec(),
                why: "the gradient has the output's shape".into(),
            });
        }
        launch(op.backward_entry(), &[saved, grad])
    }
}

/// CPU references in f64, row by row.
pub mod reference {
    use super::{NORM_EPS, RowOp};

    pub fn rows(x: &[f64], n: usize, op: RowOp) -> Vec<f64> {
        x.chunks(n)
            .flat_map(|row| {
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = row.iter().map(|v| (v - m).exp()).sum();
                let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(NORM_EPS);
                row.iter()
                    .map(move |&v| match op {
                        RowOp::Softmax => (v - m).exp() / total,
                        RowOp::LogSoftmax => v - m - total.ln(),
                        RowOp::L2Normalize => v / norm,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The gradient with respect to the input `x`, given the output gradient `g`.
    pub fn rows_backward(g: &[f64], x: &[f64], n: usize, op: RowOp) -> Vec<f64> {
        let y = rows(x, n, op);
        let mut out = Vec::with_capacity(x.len());
        for ((xr, yr), gr) in x.chunks(n).zip(y.chunks(n)).zip(g.chunks(n)) {
            match op {
                RowOp::Softmax => {
                    let dot: f64 = gr.iter().zip(yr).map(|(g, y)| g * y).sum();
                    out.extend(yr.iter().zip(gr).map(|(y, g)| y * (g - dot)));
                }
                RowOp::LogSoftmax => {
                    let total: f64 = gr.iter().sum();
                    out.extend(yr.iter().zip(gr).map(|(y, g)| g - y.exp() * total));
                }
                RowOp::L2Normalize => {
                    let length = xr.iter().map(|v| v * v).sum::<f64>().sqrt();
                    if length < NORM_EPS {
                        out.extend(gr.iter().map(|g| g / NORM_EPS));
                        continue;
                    }
                    let dot: f64 = gr.iter().zip(xr).map(|(g, x)| g * x).sum();
                    out.extend(
                        gr.iter()
                            .zip(yr)
                            .map(|(g, y)| (g - y * dot / length) / length),
                    );
                }
            }
        }
        out
    }
}
