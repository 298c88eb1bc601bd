//! Self-supervised pre-training: SwAV (Caron et al. 2020) as the paper ran it.
//!
//! [`sinkhorn`] computes SwAV's codes on the GPU, and [`SwavLoss`] the swapped-prediction
//! loss over multi-crop prototype scores.

mod loss;
mod sinkhorn;

pub use loss::{SwapOutcome, SwavLoss};
pub use sinkhorn::sinkhorn;

/// CPU references in f64, for tests.
pub mod reference {
    pub use super::loss::reference::swav_loss;
    pub use super::sinkhorn::reference::{sinkhorn_log, sinkhorn_paper};
}
