//! Optimisers: their updates run on the GPU, in place on the parameters' tensors.

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;
