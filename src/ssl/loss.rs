//! SwAV's swapped-prediction loss: the codes of one crop, from Sinkhorn-Knopp, are predicted
//! from the scores of every other crop.

use super::sinkhorn_across;
use crate::autograd::Var;
use crate::dist::{self, Collective};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The loss's settings; [`SwavLoss::default`] is the paper's (and facebookresearch/swav's).
#[derive(Clone, Debug, PartialEq)]
pub struct SwavLoss {
    /// Softmax temperature of the predictions (0.1).
    pub temperature: f32,
    /// Sinkhorn's epsilon (0.05) and iterations (3).
    pub epsilon: f32,
    pub iterations: usize,
    /// The crops whose codes are predicted ([0, 1]: the two large crops).
    pub crops_for_assign: Vec<usize>,
}

impl Default for SwavLoss {
    fn default() -> SwavLoss {
        SwavLoss {
            temperature: 0.1,
            epsilon: 0.05,
            iterations: 3,
            crops_for_assign: vec![0, 1],
        }
    }
}

/// The loss of one batch and the codes it predicted.
pub struct SwapOutcome {
    pub loss: Var,
    /// The codes `[B, K]` of each crop of `crops_for_assign`, in that order.
    pub codes: Vec<Tensor>,
}

impl SwavLoss {
    /// The loss of prototype scores `[crops * batch, K]`, crop-major (rows `c * batch ..
    /// (c + 1) * batch` are crop c):
    /// `mean over a of (1 / (crops - 1)) sum over v != a of CE(q_a, softmax(s_v / T))`,
    /// the cross-entropy averaged over the batch, as the paper's `shared_step`. `queued`
    /// holds, per crop of `crops_for_assign`, scores of queued embeddings `[Q, K]` that
    /// Sinkhorn sees before the batch's (facebookresearch/swav's queue), or `None`.
    ///
    /// The paper's code takes `log(softmax(.))`; this takes `log_softmax`, equal in exact
    /// arithmetic and finite where softmax underflows.
    ///
    /// Split over the ranks of `comm` (each with `batch` rows of its own), the codes come from
    /// [`sinkhorn_across`] and the means are over the ranks' summed batch: each rank's loss is
    /// its share, and the ranks' losses and gradients sum to those of one process on the whole
    /// batch.
    pub fn forward(
        &self,
        scores: &Var,
        batch: usize,
        queued: &[Option<Tensor>],
        comm: &dyn Collective,
    ) -> Result<SwapOutcome> {
        let rows = scores.shape().first().copied().unwrap_or(0);
        let crops = rows.checked_div(batch).unwrap_or(0);
        let assign = &self.crops_for_assign;
        if scores.shape().len() != 2 || crops < 2 || crops * batch != rows {
            return Err(Error::InvalidArgument {
                op: "swav loss",
                why: format!(
                    "takes scores [crops * batch, K] of 2 crops or more, got {:?} for batch {batch}",
                    scores.shape()
                ),
            });
        }
        if assign.is_empty() || assign.iter().any(|&a| a >= crops) || queued.len() != assign.len() {
            return Err(Error::InvalidArgument {
                op: "swav loss",
                why: format!(
                    "crops for assignment {assign:?} must be among the {crops} crops, with one \
                     queue entry each (got {})",
                    queued.len()
                ),
            });
        }
        let mut codes = Vec::new();
        for (&a, queue) in assign.iter().zip(queued) {
            let out = scores.value().slice_batch(a * batch, batch)?;
            let q = match queue {
                Some(queue) => {
                    let all = sinkhorn_across(
                        &Tensor::concat_batch(&[queue, &out])?,
                        self.epsilon,
                        self.iterations,
                        comm,
                    )?;
                    all.slice_batch(queue.shape()[0], batch)?
                }
                None => sinkhorn_across(&out, self.epsilon, self.iterations, comm)?,
            };
            codes.push(q);
        }
        // Crop v is asked to predict the codes of every assigned crop but itself; one weight
        // per pair folds the means over pairs and over the batch into one sum.
        let total = dist::total(comm, batch)?;
        let weight = 1.0 / (assign.len() * (crops - 1) * total) as f32;
        let mut targets = Vec::new();
        for v in 0..crops {
            let mut target: Option<Tensor> = None;
            for (&a, q) in assign.iter().zip(&codes) {
                if a != v {
                    target = Some(match target {
                        Some(t) => t.add(q)?,
                        None => q.clone(),
                    });
                }
            }
            targets.push(match target {
                Some(t) => t.scale(weight)?,
                None => Tensor::zeros(
                    scores.value().gpu(),
                    &[batch, scores.shape()[1]],
                    crate::DType::F32,
                )?,
            });
        }
        let targets = Tensor::concat_batch(&targets.iter().collect::<Vec<_>>())?;
        let log_p = scores.scale(1.0 / self.temperature)?.log_softmax()?;
        let loss = log_p.mul(&Var::constant(targets))?.sum_all()?.scale(-1.0)?;
        Ok(SwapOutcome { loss, codes })
    }
}

/// CPU reference in f64.
pub mod reference {
    use super::super::sinkhorn::reference::sinkhorn_log;

    /// The loss and its gradient with respect to the scores, as [`super::SwavLoss::forward`]
    /// without a queue.
    pub fn swav_loss(
        scores: &[f64],
        k: usize,
        batch: usize,
        assign: &[usize],
        temperature: f64,
        epsilon: f64,
        iterations: usize,
    ) -> (f64, Vec<f64>) {
        let crops = scores.len() / k / batch;
        let block = batch * k;
        let codes: Vec<Vec<f64>> = assign
            .iter()
            .map(|&a| sinkhorn_log(&scores[a * block..(a + 1) * block], k, epsilon, iterations))
            .collect();
        let mut loss = 0.0;
        let mut grad = vec![0.0; scores.len()];
        let weight = 1.0 / (assign.len() * (crops - 1) * batch) as f64;
        for (q, &a) in codes.iter().zip(assign) {
            for v in (0..crops).filter(|&v| v != a) {
                for i in 0..batch {
                    let row = &scores[v * block + i * k..v * block + (i + 1) * k];
                    let top = row
                        .iter()
                        .fold(f64::NEG_INFINITY, |m, &s| m.max(s / temperature));
                    let total: f64 = row.iter().map(|s| (s / temperature - top).exp()).sum();
                    let qsum: f64 = q[i * k..(i + 1) * k].iter().sum();
                    for j in 0..k {
                        let log_p = row[j] / temperature - top - total.ln();
                        let target = q[i * k + j];
                        loss -= weight * target * log_p;
                        grad[v * block + i * k + j] +=
                            weight * (log_p.exp() * qsum - target) / temperature;
                    }
                }
            }
        }
        (loss, grad)
    }
}
