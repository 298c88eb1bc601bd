//! One SwAV training step as the paper's `shared_step` and `on_after_backward` take it, with
//! facebookresearch/swav's optional queue.

use super::{Swav, SwavLoss};
use crate::autograd::{Var, autocast};
use crate::dist::{self, Collective};
use crate::error::Result;
use crate::ops::matmul::MatmulOptions;
use crate::optim::{LossScale, Optimizer, Sgd};
use crate::tensor::{DType, Tensor};

/// FB's queue: the embeddings of the assigned crops of recent batches, newest first, whose
/// scores Sinkhorn sees beside the batch's once the queue is full.
pub struct Queue {
    /// One `[length, dim]` tensor per crop of `crops_for_assign`.
    pub embeddings: Vec<Tensor>,
    /// Rows written so far (the queue is used once this reaches `length`).
    pub filled: usize,
}

impl Queue {
    pub fn new(
        gpu: &std::sync::Arc<crate::Gpu>,
        crops: usize,
        length: usize,
        dim: usize,
    ) -> Result<Queue> {
        Ok(Queue {
            embeddings: (0..crops)
                .map(|_| Tensor::zeros(gpu, &[length, dim], DType::F32))
                .collect::<Result<_>>()?,
            filled: 0,
        })
    }

    fn length(&self) -> usize {
        self.embeddings[0].shape()[0]
    }
}

/// What a step leaves behind, on the device.
pub struct StepOutcome {
    pub loss: Var,
    /// The scores of every crop against the prototypes, `[crops * B, prototypes]`.
    pub scores: Tensor,
    /// The codes of each assigned crop, `[B, prototypes]`.
    pub codes: Vec<Tensor>,
    /// Whether mixed precision skipped the update (its gradients held inf or NaN).
    pub skipped: bool,
    /// Data-parallel: how long summing the gradients over the ranks took, once the backward
    /// pass had finished on the device (reading them back, the all-reduce, writing them).
    pub exchange: Option<std::time::Duration>,
}

/// The model, the loss and the optimiser of a SwAV run.
pub struct SwavTrainer {
    pub model: Swav,
    pub loss: SwavLoss,
    pub optimizer: Sgd,
    /// Mixed precision: the backbone's convolutions take f16 operands and the loss is scaled
    /// by this (PyTorch's autocast and GradScaler); `None` computes everything in f32.
    pub mixed: Option<LossScale>,
}

impl SwavTrainer {
    /// One step on a batch of `batch` slices whose crops are `groups` (one tensor per crop
    /// size, crop-major, from [`super::MultiCrop::apply`]): prototypes renormalised, forward
    /// in training mode, the swapped-prediction loss, backward, the prototypes' gradient
    /// dropped while `freeze_prototypes` (so the optimiser leaves them, decay included), and
    /// an optimiser step at `lr`. Nothing is read back, except under mixed precision whether
    /// the gradients were finite (a step with inf or NaN ones is skipped, as GradScaler's).
    ///
    /// Data-parallel, each rank of `comm` steps its replica on its own `batch` slices: the
    /// codes and the loss's means span the ranks' batches, and the gradients are summed over
    /// the ranks before anything looks at them, so every replica takes the same update.
    pub fn step(
        &mut self,
        groups: &[Tensor],
        batch: usize,
        lr: f32,
        freeze_prototypes: bool,
        queue: Option<&mut Queue>,
        comm: &dyn Collective,
    ) -> Result<StepOutcome> {
        self.model.normalize_prototypes()?;
        self.optimizer.zero_grad();
        let inputs: Vec<Var> = groups.iter().cloned().map(Var::constant).collect();
        let operands = match self.mixed {
            Some(_) => DType::F16,
            None => DType::F32,
        };
        let out = autocast(operands, || self.model.forward(&inputs, true))?;
        let assign = &self.loss.crops_for_assign;
        let queued: Vec<Option<Tensor>> = match &queue {
            Some(q) if q.filled >= q.length() => q
                .embeddings
                .iter()
                .map(|e| {
                    let t = MatmulOptions {
                        trans_a: false,
                        trans_b: true,
                    };
                    e.matmul_t(self.model.prototypes.value(), t).map(Some)
                })
                .collect::<Result<_>>()?,
            _ => vec![None; assign.len()],
        };
        let swapped = self.loss.forward(&out.scores, batch, &queued, comm)?;
        if let Some(q) = queue {
            let length = q.length();
            for (e, &a) in q.embeddings.iter_mut().zip(assign) {
                let newest = out.embeddings.value().slice_batch(a * batch, batch)?;
                *e = match length > batch {
                    true => Tensor::concat_batch(&[&newest, &e.slice_batch(0, length - batch)?])?,
                    false => newest.slice_batch(0, length)?,
                };
            }
            q.filled = (q.filled + batch).min(length);
        }
        match &self.mixed {
            None => swapped.loss.backward()?,
            Some(scaler) => swapped.loss.scale(scaler.scale)?.backward()?,
        }
        let exchange = match comm.size() {
            1 => None,
            _ => {
                self.model.prototypes.value().gpu().sync()?;
                let start = std::time::Instant::now();
                dist::sum_gradients(self.optimizer.params(), comm, dist::BUCKET)?;
                Some(start.elapsed())
            }
        };
        if freeze_prototypes {
            self.model.prototypes.zero_grad();
        }
        // As the paper's code under Lightning's AMP: frozen prototypes' gradients are gone
        // before the scaler looks for inf and NaN.
        let finite = match &mut self.mixed {
            None => true,
            Some(scaler) => {
                let finite = scaler.unscale(self.optimizer.params())?;
                scaler.update(finite);
                finite
            }
        };
        if finite {
            self.optimizer.lr = lr;
            self.optimizer.step()?;
        }
        Ok(StepOutcome {
            loss: swapped.loss,
            scores: out.scores.value().clone(),
            codes: swapped.codes,
            skipped: !finite,
            exchange,
        })
    }
}
