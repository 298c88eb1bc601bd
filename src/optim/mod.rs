//! Optimisers: their updates run on the GPU, in place on the parameters' tensors.

mod adam;
mod lars;
mod sgd;

pub use adam::Adam;
pub use lars::Lars;
pub use sgd::Sgd;

use crate::autograd::Var;
use crate::error::Result;

/// An optimiser over a fixed list of parameters.
pub trait Optimizer {
    fn params(&self) -> &[Var];

    /// One update of every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;

    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
}
