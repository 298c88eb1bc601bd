//! Gradient unscaling for mixed precision (`shaders/amp.wgsl`): the gradients of a scaled
//! loss divided by the scale in place, and whether any was inf or NaN.

use crate::error::Result;
use crate::gpu::shader;
use crate::tensor::{DType, Tensor};
use crate::uniform;

uniform! {
    pub(crate) struct Params for [shader::AMP] {
        len: u32,
        inv_scale: f32,
    }
}

/// Multiplies every tensor of `grads` (f32) by `inv_scale` in place and returns whether all
/// their elements were finite before. One read-back of one flag, after all of them.
pub fn unscale_and_check(grads: &[&Tensor], inv_scale: f32) -> Result<bool> {
    let Some(first) = grads.first() else {
        return Ok(true);
    };
    let gpu = first.gpu();
    let found = Tensor::zeros(gpu, &[1], DType::F32)?;
    let kernel = gpu.kernel(&shader::AMP, "unscale_check", &[])?;
    for g in grads {
        g.expect_dtype("unscale_and_check", DType::F32)?;
        let params = Params {
            len: g.numel() as u32,
            inv_scale,
        };
        let groups = gpu.grid_1d(g.numel().div_ceil(256) as u64, &kernel.label)?;
        gpu.dispatch(
            &kernel,
            &params,
            &[
                ("g", g.binding("gradient")?),
                ("found", found.binding("non-finite flag")?),
            ],
            groups,
        )?;
    }
    // The flag is a u32 in an f32 tensor's word: read back its bits.
    Ok(found.to_vec()?[0].to_bits() == 0)
}

/// CPU reference.
pub mod reference {
    /// `grad * inv_scale`, and whether every element of `grad` was finite.
    pub fn unscale_and_check(grad: &[f64], inv_scale: f64) -> (Vec<f64>, bool) {
        let finite = grad.iter().all(|v| v.is_finite());
        (grad.iter().map(|v| v * inv_scale).collect(), finite)
    }
}
