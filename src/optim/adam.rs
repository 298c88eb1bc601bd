//! Adam and AdamW as `torch.optim.Adam` / `torch.optim.AdamW` (amsgrad off), one fused
//! kernel per parameter and step (`shaders/optim.wgsl`).

use super::Optimizer;
use crate::autograd::Var;
use crate::error::Result;
use crate::gpu::shader;
use crate::tensor::{DType, Tensor};
use crate::uniform;

uniform! {
    pub(crate) struct Params for [shader::OPTIM] {
        len: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        correction1: f32,
        correction2_sqrt: f32,
    }
}

pub struct Adam {
    params: Vec<Var>,
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: weight decay applied to the weights, not added to the gradient.
    pub decoupled: bool,
    /// Steps taken per parameter: as PyTorch's `state["step"]`, a parameter that had no
    /// gradient (frozen) is not stepped, and its bias correction starts when it first has one.
    steps: Vec<u32>,
    /// First and second moments per parameter, zero at first.
    moments: Vec<Option<(Tensor, Tensor)>>,
}

impl Adam {
    /// `torch.optim.Adam(params, lr)` with its defaults: betas (0.9, 0.999), eps 1e-8, no
    /// weight decay.
    pub fn new(params: Vec<Var>, lr: f32) -> Adam {
        let moments = vec![None; params.len()];
        let steps = vec![0; params.len()];
        Adam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            steps,
            moments,
        }
    }

    /// `torch.optim.AdamW(params, lr)`: decoupled weight decay, 0.01 by default.
    pub fn adamw(params: Vec<Var>, lr: f32) -> Adam {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Adam::new(params, lr)
        }
    }

    pub fn weight_decay(mut self, weight_decay: f32) -> Adam {
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for Adam {
    fn params(&self) -> &[Var] {
        &self.params
    }

    /// One update of every parameter that has a gradient.
    fn step(&mut self) -> Result<()> {
        let (b1, b2) = (self.betas.0 as f64, self.betas.1 as f64);
        for ((p, moments), step) in self
            .params
            .iter()
            .zip(&mut self.moments)
            .zip(&mut self.steps)
        {
            let Some(grad) = p.grad() else {
                continue;
            };
            *step += 1;
            let t = *step as i32;
            let value = p.value();
            let gpu = value.gpu();
            let (m, v) = match moments {
                Some(mv) => mv,
                None => moments.insert((
                    Tensor::zeros(gpu, value.shape(), DType::F32)?,
                    Tensor::zeros(gpu, value.shape(), DType::F32)?,
                )),
            };
            let params = Params {
                len: value.numel() as u32,
                lr: self.lr,
                beta1: self.betas.0,
                beta2: self.betas.1,
                eps: self.eps,
                weight_decay: self.weight_decay,
                correction1: (1.0 - b1.powi(t)) as f32,
                correction2_sqrt: (1.0 - b2.powi(t)).sqrt() as f32,
            };
            let kernel = gpu.kernel(
                &shader::OPTIM,
                "adam",
                &[("DECOUPLED", self.decoupled as u8 as f64)],
            )?;
            let groups = gpu.grid_1d(value.numel().div_ceil(256) as u64, &kernel.label)?;
            gpu.dispatch(
                &kernel,
                &params,
                &[
                    ("grad", grad.binding("adam gradient")?),
                    ("param", value.binding("adam parameter")?),
                    ("m", m.binding("adam first moment")?),
                    ("v", v.binding("adam second moment")?),
                ],
                groups,
            )?;
        }
        Ok(())
    }
}
