//! Stochastic gradient descent as `torch.optim.SGD`: weight decay, momentum (with
//! dampening 0) and Nesterov momentum.

use super::Optimizer;
use crate::autograd::Var;
use crate::error::Result;
use crate::tensor::Tensor;

pub struct Sgd {
    params: Vec<Var>,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
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
            weight_decay: 0.0,
            nesterov: false,
            buffers,
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
}

impl Optimizer for Sgd {
    fn params(&self) -> &[Var] {
        &self.params
    }

    /// One update of every parameter that has a gradient:
    /// `d = g + wd p; b = momentum b + d (b = d at first); d = d + momentum b (Nesterov) or b;
    /// p -= lr d`.
    fn step(&mut self) -> Result<()> {
        for (p, buffer) in self.params.iter().zip(&mut self.buffers) {
            let Some(grad) = p.grad() else {
                continue;
            };
            let value = p.value();
            let mut d = grad;
            if self.weight_decay != 0.0 {
                d = d.add(&value.scale(self.weight_decay)?)?;
            }
            if self.momentum != 0.0 {
                let b = match buffer.take() {
                    Some(b) => {
                        b.scale_(self.momentum)?;
                        b.add_(&d)?;
                        b
                    }
                    None => d.deep_clone()?,
                };
                d = match self.nesterov {
                    true => d.add(&b.scale(self.momentum)?)?,
                    false => b.clone(),
                };
                *buffer = Some(b);
            }
            value.add_(&d.scale(-self.lr)?)?;
        }
        Ok(())
    }
}
