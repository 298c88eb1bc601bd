//! Optimisers: their updates run on the GPU, in place on the parameters' tensors.

mod sgd;

pub use sgd::Sgd;
