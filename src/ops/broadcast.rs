//! Broadcasting along one axis (`shaders/broadcast.wgsl`): the shape change a reduction
//! undoes, for the gradients of sum and mean and for adding a bias to every row.

use crate::error::{Error, Result};
use crate::gpu::shader;
use crate::ops::windows;
use crate::tensor::{DType, Tensor};
use crate::uniform;

uniform! {
    pub(crate) struct Params for [shader::BROADCAST] {
        outer: u32,
        len: u32,
        inner: u32,
        base_in: u32,
        base_out: u32,
    }
}

impl Tensor {
    /// A new axis of `len` copies inserted at `axis`: `[a, b]` expanded at 1 by 3 is
    /// `[a, 3, b]`, each `[i, :, j]` equal to `self[i, j]`.
    pub fn expand_axis(&self, axis: usize, len: usize) -> Result<Tensor> {
        self.expect_dtype("expand_axis", DType::F32)?;
        if axis > self.shape().len() || len == 0 {
            return Err(Error::InvalidArgument {
                op: "expand_axis",
                why: format!(
                    "cannot insert an axis of {len} at {axis} into a {:?} tensor of shape {:?}",
                    self.dtype(),
                    self.shape()
                ),
            });
        }
        let mut shape = self.shape().to_vec();
        shape.insert(axis, len);
        let out = Tensor::uninit(self.gpu(), &shape, DType::F32)?;
        let outer: usize = self.shape()[..axis].iter().product();
        let inner: usize = self.shape()[axis..].iter().product();
        let gpu = self.gpu();
        let kernel = gpu.kernel(&shader::BROADCAST, "expand", &[])?;
        for window in windows(gpu, "expand outer index", outer, &[inner, len * inner])? {
            let params = Params {
                outer: window.count as u32,
                len: len as u32,
                inner: inner as u32,
                base_in: window.base[0],
                base_out: window.base[1],
            };
            let elements = window.count * len * inner;
            let groups = gpu.grid_1d(elements.div_ceil(256) as u64, &kernel.label)?;
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

/// CPU reference.
pub mod reference {
    /// `x` of `shape` with an axis of `len` copies inserted at `axis`.
    pub fn expand_axis(x: &[f64], shape: &[usize], axis: usize, len: usize) -> Vec<f64> {
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis..].iter().product();
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            for _ in 0..len {
                out.extend_from_slice(&x[o * inner..(o + 1) * inner]);
            }
        }
        out
    }
}
