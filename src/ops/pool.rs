//! Max pooling (`shaders/pool.wgsl`), NCHW, square windows with stride and padding, as
//! `torch.nn.MaxPool2d`: the forward remembers where each maximum came from, and the
//! gradient goes back there. (Adaptive average pooling to 1 x 1 is a mean over the pixels.)

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PooledBuffer, STORAGE, shader};
use crate::ops::{favoured_first, size_bucket, windows};
use crate::tensor::{DType, Tensor};
use crate::uniform;

/// A `k` x `k` window moved by `stride`, over an input padded by `padding` on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolSpec {
    /// ResNet's stem: 3 x 3, stride 2, padding 1.
    pub const RESNET: PoolSpec = PoolSpec {
        k: 3,
        stride: 2,
        padding: 1,
    };
}

/// The kernels of max pooling's gradient, which the autotuner picks between per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolBackward {
    /// One invocation per input element (what a GPU wants).
    Elements,
    /// One invocation per input row, without a division per element (what software
    /// adapters want).
    Rows,
}

impl PoolBackward {
    pub const ALL: [PoolBackward; 2] = [PoolBackward::Elements, PoolBackward::Rows];

    pub fn name(self) -> &'static str {
        match self {
            PoolBackward::Elements => "elements",
            PoolBackward::Rows => "rows",
        }
    }
}

/// Where each output's maximum came from: its index within the input plane.
#[derive(Clone)]
pub struct Argmax {
    indices: Arc<PooledBuffer>,
    input_shape: Vec<usize>,
    spec: PoolSpec,
}

uniform! {
    pub(crate) struct Params for [shader::POOL] {
        planes: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        k: u32,
        stride: u32,
        pad: u32,
        base_in: u32,
        base_out: u32,
    }
}

fn params(shape: &[usize], spec: PoolSpec) -> Result<Params> {
    let bad = |why: String| Error::InvalidArgument {
        op: "max_pool2d",
        why,
    };
    let [n, c, h, w] = shape else {
        return Err(bad(format!("takes [N, C, H, W], got {shape:?}")));
    };
    if spec.k == 0 || spec.stride == 0 || 2 * spec.padding > spec.k {
        return Err(bad(format!(
            "{spec:?}: k and stride must be positive, padding at most half the window"
        )));
    }
    let out = |size: usize| -> Result<usize> {
        (size + 2 * spec.padding)
            .checked_sub(spec.k)
            .map(|v| v / spec.stride + 1)
            .ok_or_else(|| bad(format!("a {}-pixel window does not fit {shape:?}", spec.k)))
    };
    Ok(Params {
        planes: (n * c) as u32,
        h: *h as u32,
        w: *w as u32,
        oh: out(*h)? as u32,
        ow: out(*w)? as u32,
        k: spec.k as u32,
        stride: spec.stride as u32,
        pad: spec.padding as u32,
        base_in: 0,
        base_out: 0,
    })
}

/// What one invocation of an entry covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Per {
    Input,
    Output,
    InputRow,
}

/// Dispatches `entry` once per plane window (`ops::windows`), with one invocation per
/// element or row as `per` says: `inputs` (x, dx) are bound with input-plane windows,
/// `outputs` (out, argmax, dy) with output-plane ones.
fn launch_windows(
    gpu: &Gpu,
    entry: &str,
    params: &Params,
    inputs: &[(&str, &wgpu::Buffer)],
    outputs: &[(&str, &wgpu::Buffer)],
    per: Per,
) -> Result<()> {
    let kernel = gpu.kernel(&shader::POOL, entry, &[])?;
    let plane_in = (params.h * params.w) as usize;
    let plane_out = (params.oh * params.ow) as usize;
    let windows = windows(
        gpu,
        "max_pool2d plane",
        params.planes as usize,
        &[plane_in, plane_out],
    )?;
    for window in &windows {
        let p = Params {
            planes: window.count as u32,
            base_in: window.base[0],
            base_out: window.base[1],
            ..*params
        };
        let bound: Vec<_> = inputs
            .iter()
            .map(|(slot, b)| (*slot, window.binding(0, b)))
            .chain(
                outputs
                    .iter()
                    .map(|(slot, b)| (*slot, window.binding(1, b))),
            )
            .collect();
        let per_plane = match per {
            Per::Input => plane_in,
            Per::Output => plane_out,
            Per::InputRow => params.h as usize,
        };
        let groups = gpu.grid_1d(
            (window.count * per_plane).div_ceil(256) as u64,
            &kernel.label,
        )?;
        gpu.dispatch(&kernel, &p, &bound, groups)?;
    }
    Ok(())
}

impl Tensor {
    /// Max pooling, and where each maximum was.
    pub fn max_pool2d(&self, spec: PoolSpec) -> Result<(Tensor, Argmax)> {
        self.expect_dtype("max_pool2d", DType::F32)?;
        let p = params(self.shape(), spec)?;
        let gpu = self.gpu();
        let shape = [
            self.shape()[0],
            self.shape()[1],
            p.oh as usize,
            p.ow as usize,
        ];
        let out = Tensor::uninit(gpu, &shape, DType::F32)?;
        let indices = gpu.buffer(
            (out.numel() * 4).max(4) as u64,
            STORAGE,
            "max_pool2d argmax",
        )?;
        launch_windows(
            gpu,
            "max_forward",
            &p,
            &[("x", self.buffer())],
            &[("out", out.buffer()), ("argmax", &indices)],
            Per::Output,
        )?;
        let argmax = Argmax {
            indices: Arc::new(indices),
            input_shape: self.shape().to_vec(),
            spec,
        };
        Ok((out, argmax))
    }

    /// The gradient of max pooling: each output's gradient goes to where its maximum was.
    pub fn max_pool2d_backward(&self, argmax: &Argmax) -> Result<Tensor> {
        let p = params(&argmax.input_shape, argmax.spec)?;
        let variants = favoured_first(self.gpu(), PoolBackward::Elements, PoolBackward::Rows);
        let key = format!(
            "max_pool2d_backward/planes{}/hw{}x{}/k{}/s{}",
            size_bucket(p.planes as usize),
            size_bucket(p.h as usize),
            size_bucket(p.w as usize),
            p.k,
            p.stride
        );
        let choice = self
            .gpu()
            .autotune(&key, &variants, PoolBackward::name, |v| {
                self.max_pool2d_backward_with(argmax, v).map(drop)
            })?;
        self.max_pool2d_backward_with(argmax, choice)
    }

    /// [`Tensor::max_pool2d_backward`] with the given kernel.
    pub fn max_pool2d_backward_with(
        &self,
        argmax: &Argmax,
        variant: PoolBackward,
    ) -> Result<Tensor> {
        let p = params(&argmax.input_shape, argmax.spec)?;
        let gpu = self.gpu();
        let dx = Tensor::uninit(gpu, &argmax.input_shape, DType::F32)?;
        let (entry, per) = match variant {
            PoolBackward::Elements => ("max_backward", Per::Input),
            PoolBackward::Rows => ("max_backward_rows", Per::InputRow),
        };
        launch_windows(
            gpu,
            entry,
            &p,
            &[("dx", dx.buffer())],
            &[("dy", self.buffer()), ("argmax_in", &argmax.indices)],
            per,
        )?;
        Ok(dx)
    }
}

/// CPU reference.
pub mod reference {
    use super::PoolSpec;

    /// Max pooling of `x [N, C, H, W]`: the outputs and, per output, the input index (within
    /// its plane) of the first maximum.
    pub fn max_pool2d(x: &[f64], shape: [usize; 4], spec: PoolSpec) -> (Vec<f64>, Vec<usize>) {
        let [n, c, h, w] = shape;
        let out = |size: usize| (size + 2 * spec.padding - spec.k) / spec.stride + 1;
        let (oh, ow) = (out(h), out(w));
        let (mut values, mut at) = (Vec::new(), Vec::new());
        for plane in 0..n * c {
            for p in 0..oh {
                for q in 0..ow {
                    let mut best = (f64::NEG_INFINITY, 0);
                    for i in 0..spec.k {
                        for j in 0..spec.k {
                            let (y, z) = (p * spec.stride + i, q * spec.stride + j);
                            if y < spec.padding || z < spec.padding {
                                continue;
                            }
                            let (y, z) = (y - spec.padding, z - spec.padding);
                            if y < h && z < w && x[plane * h * w + y * w + z] > best.0 {
                                best = (x[plane * h * w + y * w + z], y * w + z);
                            }
                        }
                    }
                    values.push(best.0);
                    at.push(best.1);
                }
            }
        }
        (values, at)
    }
}
