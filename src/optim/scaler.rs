//! Dynamic loss scaling for mixed precision, as PyTorch's `torch.amp.GradScaler`: the loss
//! is multiplied by a scale before the backward pass so that small gradients survive f16;
//! the gradients are divided by it before the step, and a step whose gradients hold inf or
//! NaN is skipped and the scale halved, while a run of finite steps doubles it.

use crate::autograd::Var;
use crate::error::Result;
use crate::ops::amp::unscale_and_check;

#[derive(Clone, Debug, PartialEq)]
pub struct LossScale {
    pub scale: f32,
    pub growth_factor: f32,
    pub backoff_factor: f32,
    /// Finite steps in a row after which the scale grows.
    pub growth_interval: u32,
    /// Finite steps since the scale last changed (PyTorch's `_growth_tracker`).
    pub good_steps: u32,
}

impl Default for LossScale {
    /// PyTorch's defaults: 2^16, ×2 after 2,000 finite steps, ×0.5 on inf or NaN.
    fn default() -> Self {
        LossScale {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            good_steps: 0,
        }
    }
}

impl LossScale {
    /// Divides the gradient of every parameter that has one by the scale, in place; whether
    /// they were all finite (if not, the step must be skipped).
    pub fn unscale(&self, params: &[Var]) -> Result<bool> {
        let grads: Vec<_> = params.iter().filter_map(Var::grad).collect();
        let grads: Vec<_> = grads.iter().collect();
        unscale_and_check(&grads, 1.0 / self.scale)
    }

    /// The scale after a step whose gradients were `finite` or not (`_amp_update_scale_`).
    pub fn update(&mut self, finite: bool) {
        if !finite {
            self.scale *= self.backoff_factor;
            self.good_steps = 0;
            return;
        }
        self.good_steps += 1;
        if self.good_steps == self.growth_interval {
            self.scale *= self.growth_factor;
            self.good_steps = 0;
        }
    }
}
