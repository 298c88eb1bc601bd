//! Layers and networks on the autograd engine: Conv2d, BatchNorm, Linear and torchvision's
//! ResNets, with torchvision's parameter names and initialisation.
//!
//! A network is built from a [`Source`] of named tensors: [`Random`] initialises them as
//! torchvision does, [`StateDict`] reads them from a safetensors file (a torchvision
//! `state_dict` saved with `safetensors.torch.save_file`, or one lim saved). Building and
//! loading are one code path, so every name is checked the same way.

mod resnet;
mod state;

pub use resnet::{Arch, ResNet, ResNetConfig};
pub use state::{Checkpoint, Entry, Random, StateDict, save, save_with};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::autograd::Var;
use crate::error::Result;
use crate::ops::conv2d::Conv2dSpec;
use crate::tensor::Tensor;

/// How a tensor starts out when it is not loaded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")`: N(0, 2 / fan_out).
    KaimingNormalFanOut,
    /// U(-bound, bound): `nn.Linear`'s default, bound = 1 / sqrt(fan_in).
    Uniform(f32),
    Const(f32),
}

/// Where a network's named tensors come from.
pub trait Source {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor>;
    /// A counter such as BatchNorm's `num_batches_tracked`.
    fn count(&mut self, name: &str) -> Result<u64>;
}

/// Calls `f` with every named tensor of a module, under `prefix`.
pub trait Visit {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>));
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// `nn.Conv2d` with groups = 1.
pub struct Conv2d {
    pub weight: Var,
    pub bias: Option<Var>,
    pub spec: Conv2dSpec,
}

impl Conv2d {
    pub fn new(
        src: &mut dyn Source,
        prefix: &str,
        [out_ch, in_ch, k]: [usize; 3],
        spec: Conv2dSpec,
        bias: bool,
    ) -> Result<Conv2d> {
        let weight = src.tensor(
            &join(prefix, "weight"),
            &[out_ch, in_ch, k, k],
            Init::KaimingNormalFanOut,
        )?;
        let bound = 1.0 / ((in_ch * k * k) as f32).sqrt();
        let bias = match bias {
            true => Some(Var::param(src.tensor(
                &join(prefix, "bias"),
                &[out_ch],
                Init::Uniform(bound),
            )?)),
            false => None,
        };
        Ok(Conv2d {
            weight: Var::param(weight),
            bias,
            spec,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.spec)
    }
}

impl Visit for Conv2d {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        f(join(prefix, "weight"), Entry::Param(&self.weight));
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), Entry::Param(b));
        }
    }
}

/// `nn.BatchNorm1d` / `nn.BatchNorm2d`: weight 1, bias 0, running mean 0 and variance 1.
pub struct BatchNorm {
    pub weight: Var,
    pub bias: Var,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    num_batches_tracked: AtomicU64,
}

impl BatchNorm {
    pub fn new(src: &mut dyn Source, prefix: &str, channels: usize) -> Result<BatchNorm> {
        let mut t =
            |name: &str, v: f32| src.tensor(&join(prefix, name), &[channels], Init::Const(v));
        let (weight, bias) = (t("weight", 1.0)?, t("bias", 0.0)?);
        let (running_mean, running_var) = (t("running_mean", 0.0)?, t("running_var", 1.0)?);
        Ok(BatchNorm {
            weight: Var::param(weight),
            bias: Var::param(bias),
            running_mean,
            running_var,
            num_batches_tracked: AtomicU64::new(src.count(&join(prefix, "num_batches_tracked"))?),
        })
    }

    /// Training normalises with the batch's statistics and updates the running ones;
    /// evaluation uses the running ones. `relu` fuses the ReLU that follows.
    pub fn forward(&self, x: &Var, training: bool, relu: bool) -> Result<Var> {
        if training {
            self.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        }
        x.batch_norm(
            &self.weight,
            &self.bias,
            &self.running_mean,
            &self.running_var,
            training,
            relu,
        )
    }
}

impl Visit for BatchNorm {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        f(join(prefix, "weight"), Entry::Param(&self.weight));
        f(join(prefix, "bias"), Entry::Param(&self.bias));
        f(
            join(prefix, "running_mean"),
            Entry::Buffer(&self.running_mean),
        );
        f(
            join(prefix, "running_var"),
            Entry::Buffer(&self.running_var),
        );
        f(
            join(prefix, "num_batches_tracked"),
            Entry::Count(self.num_batches_tracked.load(Ordering::Relaxed)),
        );
    }
}

/// `nn.Linear`, with its default initialisation.
pub struct Linear {
    pub weight: Var,
    pub bias: Var,
}

impl Linear {
    pub fn new(
        src: &mut dyn Source,
        prefix: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear> {
        let bound = 1.0 / (inputs as f32).sqrt();
        Ok(Linear {
            weight: Var::param(src.tensor(
                &join(prefix, "weight"),
                &[outputs, inputs],
                Init::Uniform(bound),
            )?),
            bias: Var::param(src.tensor(
                &join(prefix, "bias"),
                &[outputs],
                Init::Uniform(bound),
            )?),
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.linear(&self.weight, Some(&self.bias))
    }
}

impl Visit for Linear {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, Entry<'_>)) {
        f(join(prefix, "weight"), Entry::Param(&self.weight));
        f(join(prefix, "bias"), Entry::Param(&self.bias));
    }
}

/// The trainable parameters of a module with their names, in order, as PyTorch's
/// `named_parameters()`.
pub fn named_parameters(module: &dyn Visit) -> Vec<(String, Var)> {
    let mut out = Vec::new();
    module.visit("", &mut |name, entry| {
        if let Entry::Param(v) = entry {
            out.push((name, v.clone()));
        }
    });
    out
}

/// The trainable parameters of a module, in order, as PyTorch's `parameters()`: what an
/// optimiser takes.
pub fn parameters(module: &dyn Visit) -> Vec<Var> {
    named_parameters(module)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}
