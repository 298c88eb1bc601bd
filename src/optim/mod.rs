//! Optimisers: their updates run on the GPU, in place on the parameters' tensors.

pub(crate) mod adam;
mod lars;
mod scaler;
pub(crate) mod sgd;

pub use adam::Adam;
pub use lars::Lars;
pub use scaler::LossScale;
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

    /// One training step, as PyTorch's `zero_grad(); loss = f(); loss.backward(); step()`.
    /// Returns the loss, still on the device: nothing is read back.
    fn train_step(&mut self, loss: &mut dyn FnMut() -> Result<Var>) -> Result<Var> {
        self.zero_grad();
        let loss = loss()?;
        loss.backward()?;
        self.step()?;
        Ok(loss)
    }
}
