//! LARS's layer-wise scaling as lightning-bolts 0.5's `pl_bolts.optimizers.LARS`, the
//! optimiser of the paper's SwAV: SGD whose step per parameter is scaled by
//! `trust |p| / (|g| + wd |p| + eps)`. Parameters or gradients with norm 0 step with the
//! plain gradient and no weight decay, as bolts does (a zero-initialised bias's first step
//! is a full-size SGD step). The norms are computed on the device and never read back
//! (`shaders/sgd.wgsl`).

use super::sgd::StepParams;
use crate::error::Result;
use crate::gpu::shader;
use crate::tensor::{DType, Tensor};

/// Elements each invocation of the `norms` entry sums, at least, before the workgroups
/// reach their cap.
const NORM_ELEMENTS_PER_INVOCATION: usize = 8;
const MAX_NORM_GROUPS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lars {
    pub trust_coefficient: f32,
    pub eps: f32,
}

impl Default for Lars {
    /// bolts' defaults: trust coefficient 0.001, eps 1e-8.
    fn default() -> Lars {
        Lars {
            trust_coefficient: 0.001,
            eps: 1e-8,
        }
    }
}

impl Lars {
    /// Records the `norms` and `trust` entries for one parameter; returns the device's
    /// `[multiplier, weight decay]` for its step. Fills in `params`' LARS fields.
    pub(super) fn record_factor(
        &self,
        value: &Tensor,
        grad: &Tensor,
        params: &mut StepParams,
    ) -> Result<Tensor> {
        let gpu = value.gpu();
        let groups = value
            .numel()
            .div_ceil(256 * NORM_ELEMENTS_PER_INVOCATION)
            .clamp(1, MAX_NORM_GROUPS);
        params.groups = groups as u32;
        params.trust_coefficient = self.trust_coefficient;
        params.eps = self.eps;
        // Both written whole before they are read.
        let partial = Tensor::uninit(gpu, &[groups, 2], DType::F32)?;
        let factor = Tensor::uninit(gpu, &[2], DType::F32)?;
        let norms = gpu.kernel(&shader::SGD, "norms", &[])?;
        gpu.dispatch(
            &norms,
            &*params,
            &[
                ("grad", grad.binding("lars gradient")?),
                ("param", value.binding("lars parameter")?),
                ("partial", partial.binding("lars partial norms")?),
            ],
            [groups as u32, 1, 1],
        )?;
        let trust = gpu.kernel(&shader::SGD, "trust", &[])?;
        gpu.dispatch(
            &trust,
            &*params,
            &[
                ("partial", partial.binding("lars partial norms")?),
                ("factor", factor.binding("lars factor")?),
            ],
            [1, 1, 1],
        )?;
        Ok(factor)
    }
}
