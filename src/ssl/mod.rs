//! Self-supervised pre-training: SwAV (Caron et al. 2020) as the paper ran it.
//!
//! [`MultiCrop`] makes the augmented views of a batch of slices on the GPU, [`sinkhorn`]
//! computes SwAV's codes, and [`SwavLoss`] the swapped-prediction loss over the views'
//! prototype scores.

pub(crate) mod augment;
mod loss;
mod model;
pub mod pretrain;
mod schedule;
pub(crate) mod sinkhorn;
mod step;

pub use augment::{CropGroup, MultiCrop, View, random_resized_crop};
pub use loss::{SwapOutcome, SwavLoss};
pub use model::{ProjectionHead, Swav, SwavConfig, SwavOutput};
pub use schedule::{Schedule, ScheduleKind};
pub use sinkhorn::{sinkhorn, sinkhorn_across};
pub use step::{Queue, StepOutcome, SwavTrainer};

/// CPU references in f64, for tests.
pub mod reference {
    pub use super::augment::reference::crop;
    pub use super::loss::reference::swav_loss;
    pub use super::sinkhorn::reference::{sinkhorn_log, sinkhorn_paper};
}
