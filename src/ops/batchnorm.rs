//! Batch normalisation (`shaders/batchnorm.wgsl`), as `torch.nn.BatchNorm1d/2d`: the batch's
//! statistics in training (biased variance to normalise, unbiased into the running variance),
//! the running ones in evaluation, an optional fused ReLU, and the gradients.

use crate::error::{Error, Result};
use crate::gpu::shader;
use crate::ops::windows;
use crate::tensor::{DType, Tensor};
use crate::uniform;

/// PyTorch's defaults.
pub const EPS: f32 = 1e-5;
pub const MOMENTUM: f32 = 0.1;

uniform! {
    pub(crate) struct Params for [shader::BATCHNORM] {
        n: u32,
        c: u32,
        s: u32,
        eps: f32,
        momentum: f32,
        /// The batch window of one dispatch (see `dispatch`).
        images: u32,
        base: u32,
        accumulate: u32,
        finish: u32,
    }
}

/// The statistics a batch was normalised with, kept for the gradient.
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub mean: Tensor,
    /// The biased variance.
    pub var: Tensor,
    /// Whether they are the batch's own (training) rather than the running ones.
    pub training: bool,
}

/// `[N, C, S]` of `x` (`[N, C]` or `[N, C, H, W]`), checked against per-channel tensors.
fn dims(x: &Tensor, per_channel: &[&Tensor]) -> Result<Params> {
    x.expect_dtype("batch_norm", DType::F32)?;
    let shape = x.shape();
    let ok = shape.len() == 2 || shape.len() == 4;
    if !ok || per_channel.iter().any(|t| t.shape() != [shape[1]]) {
        return Err(Error::InvalidArgument {
            op: "batch_norm",
            why: format!(
                "takes f32 [N, C] or [N, C, H, W] and per-channel [C] tensors, got {shape:?} and {:?}",
                per_channel.iter().map(|t| t.shape()).collect::<Vec<_>>()
            ),
        });
    }
    Ok(Params {
        n: shape[0] as u32,
        c: shape[1] as u32,
        s: shape[2..].iter().product::<usize>() as u32,
        eps: EPS,
        momentum: MOMENTUM,
        images: 0,
        base: 0,
        accumulate: 0,
        finish: 0,
    })
}

/// How many workgroups an entry needs for a window of so many images.
enum Grid {
    PerChannel,
    PerElement,
}

/// Dispatches `entry` once per batch window (`ops::windows`): the `[N, C, S]` tensors in
/// `windowed` are bound a window at a time, the per-channel ones in `whole` whole.
fn launch_windows(
    x: &Tensor,
    entry: &str,
    constants: &[(&str, f64)],
    params: &Params,
    windowed: &[(&str, &Tensor)],
    whole: &[(&str, &Tensor)],
    grid: Grid,
) -> Result<()> {
    let gpu = x.gpu();
    let kernel = gpu.kernel(&shader::BATCHNORM, entry, constants)?;
    let image = (params.c * params.s) as usize;
    let windows = windows(gpu, "batch_norm image", params.n as usize, &[image])?;
    for (k, window) in windows.iter().enumerate() {
        let p = Params {
            images: window.count as u32,
            base: window.base[0],
            accumulate: (k > 0) as u32,
            finish: (k + 1 == windows.len()) as u32,
            ..*params
        };
        let mut bound = whole
            .iter()
            .map(|(slot, t)| Ok((*slot, t.binding("batch_norm")?)))
            .collect::<Result<Vec<_>>>()?;
        bound.extend(
            windowed
                .iter()
                .map(|(slot, t)| (*slot, window.binding(0, t.buffer()))),
        );
        let groups = match grid {
            Grid::PerChannel => params.c as u64,
            Grid::PerElement => (window.count * image).div_ceil(256) as u64,
        };
        let groups = gpu.grid_1d(groups, &kernel.label)?;
        gpu.dispatch(&kernel, &p, &bound, groups)?;
    }
    Ok(())
}

impl Tensor {
    /// Normalises with the batch's statistics and moves `running_mean` / `running_var` (in
    /// place) towards them with PyTorch's momentum 0.1; `relu` applies a ReLU to the result.
    pub fn batch_norm_train(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        relu: bool,
    ) -> Result<(Tensor, BatchStats)> {
        let p = dims(self, &[gamma, beta, running_mean, running_var])?;
        let gpu = self.gpu();
        let c = p.c as usize;
        let stats = BatchStats {
            mean: Tensor::uninit(gpu, &[c], DType::F32)?,
            var: Tensor::uninit(gpu, &[c], DType::F32)?,
            training: true,
        };
        let x = [("x", self)];
        launch_windows(
            self,
            "sum",
            &[],
            &p,
            &x,
            &[("mean", &stats.mean)],
            Grid::PerChannel,
        )?;
        let stat_bindings = [("mean", &stats.mean), ("var_", &stats.var)];
        launch_windows(
            self,
            "sum_sq_dev",
            &[],
            &p,
            &x,
            &stat_bindings,
            Grid::PerChannel,
        )?;
        let kernel = gpu.kernel(&shader::BATCHNORM, "update_running", &[])?;
        gpu.dispatch(
            &kernel,
            &p,
            &[
                ("mean", stats.mean.binding("batch_norm mean")?),
                ("var_", stats.var.binding("batch_norm variance")?),
                (
                    "running_mean",
                    running_mean.binding("batch_norm running mean")?,
                ),
                (
                    "running_var",
                    running_var.binding("batch_norm running variance")?,
                ),
            ],
            [c.div_ceil(64) as u32, 1, 1],
        )?;
        let y = self.batch_norm_apply(gamma, beta, &stats, relu)?;
        Ok((y, stats))
    }

    /// Normalises with the running statistics (evaluation mode).
    pub fn batch_norm_eval(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        relu: bool,
    ) -> Result<Tensor> {
        let stats = BatchStats {
            mean: running_mean.clone(),
            var: running_var.clone(),
            training: false,
        };
        self.batch_norm_apply(gamma, beta, &stats, relu)
    }

    fn batch_norm_apply(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        stats: &BatchStats,
        relu: bool,
    ) -> Result<Tensor> {
        let p = dims(self, &[gamma, beta, &stats.mean, &stats.var])?;
        let y = Tensor::uninit(self.gpu(), self.shape(), DType::F32)?;
        launch_windows(
            self,
            "apply",
            &[("RELU", relu as u8 as f64)],
            &p,
            &[("x", self), ("out", &y)],
            &[
                ("mean", &stats.mean),
                ("var_", &stats.var),
                ("gamma", gamma),
                ("beta", beta),
            ],
            Grid::PerElement,
        )?;
        Ok(y)
    }

    /// The gradients `(dx, dgamma, dbeta)` of batch normalisation (without its ReLU) of `x`
    /// with `stats`, from the output gradient `self`.
    pub fn batch_norm_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        stats: &BatchStats,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (dgamma, dbeta) = self.batch_norm_param_grads(x, gamma, stats)?;
        let p = dims(x, &[gamma, &stats.mean, &stats.var])?;
        let dx = Tensor::uninit(self.gpu(), x.shape(), DType::F32)?;
        launch_windows(
            x,
            "backward_apply",
            &[("TRAINING", stats.training as u8 as f64)],
            &p,
            &[("x", x), ("dy", self), ("out", &dx)],
            &[
                ("mean", &stats.mean),
                ("var_", &stats.var),
                ("gamma", gamma),
                ("sum_dy", &dbeta),
                ("sum_dy_xhat", &dgamma),
            ],
            Grid::PerElement,
        )?;
        Ok((dx, dgamma, dbeta))
    }

    /// `(dgamma, dbeta)` alone: [`Tensor::batch_norm_backward`] without the input's gradient
    /// (its first pass), for an input that needs none.
    pub fn batch_norm_param_grads(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        stats: &BatchStats,
    ) -> Result<(Tensor, Tensor)> {
        let p = dims(x, &[gamma, &stats.mean, &stats.var])?;
        if self.shape() != x.shape() {
            return Err(Error::ShapeMismatch {
                op: "batch_norm backward",
                lhs: self.shape().to_vec(),
                rhs: x.shape().to_vec(),
                why: "the gradient has the input's shape".into(),
            });
        }
        let gpu = self.gpu();
        let c = p.c as usize;
        let dbeta = Tensor::uninit(gpu, &[c], DType::F32)?;
        let dgamma = Tensor::uninit(gpu, &[c], DType::F32)?;
        launch_windows(
            x,
            "backward_sums",
            &[],
            &p,
            &[("x", x), ("dy", self)],
            &[
                ("mean", &stats.mean),
                ("var_", &stats.var),
                ("sum_dy", &dbeta),
                ("sum_dy_xhat", &dgamma),
            ],
            Grid::PerChannel,
        )?;
        Ok((dgamma, dbeta))
    }
}

/// CPU references in f64 over `[N, C, S]`.
pub mod reference {
    /// Per channel: (mean, biased variance).
    pub fn stats(x: &[f64], n: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
        (0..c)
            .map(|ch| {
                let values: Vec<f64> = (0..n)
                    .flat_map(|i| (0..s).map(move |k| (i * c + ch) * s + k))
                    .map(|i| x[i])
                    .collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let var =
                    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
                (mean, var)
            })
            .collect()
    }

    /// y = (x - mean) / sqrt(var + eps) * gamma + beta with the given per-channel statistics.
    pub fn apply(
        x: &[f64],
        stats: &[(f64, f64)],
        gamma: &[f64],
        beta: &[f64],
        c: usize,
        s: usize,
        eps: f64,
    ) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, v)| {
                let ch = (i / s) % c;
                (v - stats[ch].0) / (stats[ch].1 + eps).sqrt() * gamma[ch] + beta[ch]
            })
            .collect()
    }
}
