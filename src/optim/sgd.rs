//! Stochastic gradient descent as `torch.optim.SGD` (weight decay, momentum with
//! dampening, Nesterov momentum), and LARS as lightning-bolts 0.5's (SGD with layer-wise
//! scaling), one fused kernel per parameter and step (`shaders/sgd.wgsl`).

use super::{Lars, Optimizer};
use crate::autograd::Var;
use crate::error::Result;
use crate::gpu::shader;
use crate::tensor::{DType, Tensor};
use crate::uniform;

uniform! {
    pub(crate) struct StepParams for [shader::SGD] {
        pub len: u32,
        /// Workgroups of LARS's `norms` entry.
        pub groups: u32,
        pub lr: f32,
        pub momentum: f32,
        pub dampening: f32,
        pub weight_decay: f32,
        pub trust_coefficient: f32,
        pub eps: f32,
        /// Set by `record_step`.
        pub first: u32,
        pub nesterov: u32,
    }
}

/// Records the `step` entry for one parameter: `factor` holds `[multiplier, weight decay]`
/// on the device. Makes the parameter's momentum buffer on its first step when momentum is
/// on; without momentum the kernel touches no buffer, and `factor` fills its binding.
fn record_step(
    value: &Tensor,
    grad: &Tensor,
    buffer: &mut Option<Tensor>,
    factor: &Tensor,
    params: StepParams,
) -> Result<()> {
    let gpu = value.gpu();
    let mut params = params;
    params.first = buffer.is_none() as u32;
    // Written whole at the first step before anything reads it.
    let buf = match (params.momentum != 0.0, buffer) {
        (true, Some(buf)) => buf.clone(),
        (true, buffer) => buffer
            .insert(Tensor::uninit(gpu, value.shape(), DType::F32)?)
            .clone(),
        (false, _) => factor.clone(),
    };
    let kernel = gpu.kernel(&shader::SGD, "step", &[])?;
    let grid = gpu.grid_1d(value.numel().div_ceil(256) as u64, &kernel.label)?;
    gpu.dispatch(
        &kernel,
        &params,
        &[
            ("grad", grad.binding("optimiser gradient")?),
            ("param", value.binding("optimiser parameter")?),
            ("buf", buf.binding("momentum buffer")?),
            ("factor", factor.binding("optimiser factor")?),
        ],
        grid,
    )?;
    Ok(())
}

pub struct Sgd {
    params: Vec<Var>,
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// LARS's layer-wise scaling, if on.
    pub lars: Option<Lars>,
    /// One momentum buffer per parameter, made on its first step (as PyTorch).
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Var>, lr: f32) -> Sgd {
        let buffers = vec![None; params.len()];
        Sgd {
            params,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            lars: None,
            buffers,
        }
    }

    /// bolts' `LARS(params, lr)`: no momentum, dampening or weight decay, trust coefficient
    /// 0.001, eps 1e-8. The paper's SwAV uses lr 0.15, momentum 0.9, weight decay 1e-6.
    pub fn lars(params: Vec<Var>, lr: f32) -> Sgd {
        Sgd {
            lars: Some(Lars::default()),
            ..Sgd::new(params, lr)
        }
    }

    pub fn momentum(mut self, momentum: f32, nesterov: bool) -> Sgd {
        self.momentum = momentum;
        self.nesterov = nesterov;
        self
    }

    pub fn weight_decay(mut self, weight_decay: f32) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// Each parameter's momentum buffer, once its first step has made it (PyTorch's
    /// `state[p]["momentum_buffer"]`).
    pub fn momentum_buffers(&self) -> &[Option<Tensor>] {
        &self.buffers
    }

    /// Restores parameter `i`'s momentum buffer (from a checkpoint).
    pub fn set_momentum_buffer(&mut self, i: usize, buffer: Tensor) -> Result<()> {
        let shape = self.params[i].shape();
        if buffer.shape() != shape {
            return Err(crate::Error::ShapeMismatch {
                op: "set_momentum_buffer",
                lhs: shape.to_vec(),
                rhs: buffer.shape().to_vec(),
                why: "a momentum buffer has its parameter's shape".into(),
            });
        }
        self.buffers[i] = Some(buffer);
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn params(&self) -> &[Var] {
        &self.params
    }

    /// One update of every parameter that has a gradient:
    /// `d = g + wd p` (LARS: see [`Lars`]); `b = momentum b + (1 - dampening) d` (b = d at
    /// first); `d = d + momentum b` (Nesterov) or `b`; `p -= lr d`.
    fn step(&mut self) -> Result<()> {
        let Some(first) = self.params.first() else {
            return Ok(());
        };
        let plain = Tensor::from_slice(first.value().gpu(), &[2], &[1.0, self.weight_decay])?;
        for (p, buffer) in self.params.iter().zip(&mut self.buffers) {
            let Some(grad) = p.grad() else {
                continue;
            };
            let value = p.value();
            let mut params = StepParams {
                len: value.numel() as u32,
                groups: 0,
                lr: self.lr,
                momentum: self.momentum,
                dampening: self.dampening,
                weight_decay: self.weight_decay,
                trust_coefficient: 0.0,
                eps: 0.0,
                first: 0,
                nesterov: self.nesterov as u32,
            };
            let factor = match &self.lars {
                Some(lars) => lars.record_factor(value, &grad, &mut params)?,
                None => plain.clone(),
            };
            record_step(value, &grad, buffer, &factor, params)?;
        }
        Ok(())
    }
}
