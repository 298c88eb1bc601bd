//! Reductions along one axis (`shaders/reduce.wgsl`): sum, mean, max. The axis is removed
//! from the shape, as `torch.sum(x, dim)` does.

use crate::error::{Error, Result};
use crate::gpu::shader;
use crate::ops::{size_bucket, windows};
use crate::tensor::{DType, Tensor};
use crate::uniform;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// The kernel variants; the autotuner picks one per adapter and shape class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceVariant {
    /// One invocation per output: for many outputs.
    Serial,
    /// One workgroup of this many invocations per output and a tree in shared memory: for
    /// few, long reductions.
    Workgroup(u32),
}

impl ReduceVariant {
    pub const ALL: [ReduceVariant; 3] = [Self::Serial, Self::Workgroup(64), Self::Workgroup(256)];

    pub fn name(self) -> String {
        match self {
            Self::Serial => "serial".into(),
            Self::Workgroup(n) => format!("workgroup{n}"),
        }
    }
}

impl ReduceOp {
    fn code(self) -> f64 {
        match self {
            ReduceOp::Sum => 0.0,
            ReduceOp::Mean => 1.0,
            ReduceOp::Max => 2.0,
        }
    }
}

uniform! {
    pub(crate) struct Params for [shader::REDUCE] {
        outer: u32,
        len: u32,
        inner: u32,
        base_in: u32,
        base_out: u32,
    }
}

/// `[outer, len, inner]`: the input seen around `axis`.
fn split(shape: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(Error::InvalidArgument {
            op: "reduce",
            why: format!("axis {axis} is out of range for shape {shape:?}"),
        });
    }
    if shape[axis] == 0 {
        return Err(Error::InvalidArgument {
            op: "reduce",
            why: format!("cannot reduce over axis {axis} of shape {shape:?}: it is empty"),
        });
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

impl Tensor {
    pub fn sum(&self, axis: usize) -> Result<Tensor> {
        self.reduce(axis, ReduceOp::Sum)
    }

    pub fn mean(&self, axis: usize) -> Result<Tensor> {
        self.reduce(axis, ReduceOp::Mean)
    }

    pub fn max(&self, axis: usize) -> Result<Tensor> {
        self.reduce(axis, ReduceOp::Max)
    }

    /// Reduces along `axis` with the variant the autotuner picks.
    pub fn reduce(&self, axis: usize, op: ReduceOp) -> Result<Tensor> {
        let (outer, len, inner) = split(self.shape(), axis)?;
        let outputs = outer * inner;
        let key = format!(
            "reduce/{op:?}/out{}/len{}/inner{}",
            size_bucket(outputs),
            size_bucket(len),
            if inner == 1 { "1" } else { "n" }
        );
        // Without tuning: many outputs want an invocation each, few want a workgroup each.
        let mut candidates = ReduceVariant::ALL;
        if outputs < 4096 && len >= 256 {
            candidates.rotate_left(2);
        }
        let choice = self
            .gpu()
            .autotune(&key, &candidates, ReduceVariant::name, |variant| {
                self.reduce_with(axis, op, variant).map(drop)
            })?;
        self.reduce_with(axis, op, choice)
    }

    /// Reduces along `axis` with a given kernel variant.
    pub fn reduce_with(&self, axis: usize, op: ReduceOp, variant: ReduceVariant) -> Result<Tensor> {
        self.expect_dtype("reduce", DType::F32)?;
        let (outer, len, inner) = split(self.shape(), axis)?;
        let mut shape = self.shape().to_vec();
        shape.remove(axis);
        let out = Tensor::uninit(self.gpu(), &shape, DType::F32)?;
        let gpu = self.gpu();
        let kernel = match variant {
            ReduceVariant::Serial => gpu.kernel(&shader::REDUCE, "serial", &[("OP", op.code())])?,
            ReduceVariant::Workgroup(wg) => gpu.kernel(
                &shader::REDUCE,
                "tree",
                &[("OP", op.code()), ("WG", wg as f64)],
            )?,
        };
        for window in windows(gpu, "reduce outer index", outer, &[len * inner, inner])? {
            let outputs = (window.count * inner) as u64;
            let groups = match variant {
                ReduceVariant::Serial => outputs.div_ceil(64),
                ReduceVariant::Workgroup(_) => outputs,
            };
            let params = Params {
                outer: window.count as u32,
                len: len as u32,
                inner: inner as u32,
                base_in: window.base[0],
                base_out: window.base[1],
            };
            let groups = gpu.grid_1d(groups, &kernel.label)?;
            gpu.dispatch(
                &kernel,
                &params,
                &[
                    ("x", window.binding(0, self.buffer())),
                    ("out", window.binding(1, out.buffer())),
                ],
                groups,
            )?;
        }
        Ok(out)
    }
}

/// CPU reference in f64.
pub mod reference {
    use super::ReduceOp;

    /// Reduces `x` (of `shape`) along `axis`; returns the values in the output's order.
    pub fn reduce(x: &[f64], shape: &[usize], axis: usize, op: ReduceOp) -> Vec<f64> {
        let outer: usize = shape[..axis].iter().product();
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let values = (0..len).map(|j| x[(o * len + j) * inner + i]);
                out.push(match op {
                    ReduceOp::Sum => values.sum(),
                    ReduceOp::Mean => values.sum::<f64>() / len as f64,
                    ReduceOp::Max => values.fold(f64::NEG_INFINITY, f64::max),
                });
            }
        }
        out
    }
}
