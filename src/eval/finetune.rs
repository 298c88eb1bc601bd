//! The `finetune` and `paper` protocols: the whole ResNet with a new classifier trains on the
//! images with Adam and cross-entropy, in training mode, and the epoch with the best
//! validation accuracy is tested (as the paper's `ModelCheckpoint(monitor="val/accuracy")`).
//! The paper's protocol (less-is-more.md §4.1) freezes the convolutions for its first epochs
//! while BatchNorm trains, then opens everything, and lowers the rate after the first open
//! epoch, which is what Lightning's `BackboneFinetuning` callback ended up doing in its code.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

use super::dataset::{Sample, Transform};
use super::metrics::accuracy;
use super::probe::EpochLog;
use crate::autograd::{Var, no_grad};
use crate::io::{Failure, IoError};
use crate::nn::{self, ResNet, StateDict};
use crate::optim::{Adam, Optimizer};
use crate::{Gpu, Result, Tensor};

/// The training settings.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneOptions {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub weight_decay: f32,
    pub seed: u64,
    /// Epochs with the convolutions frozen (BatchNorm and the classifier train).
    pub freeze_epochs: usize,
    /// The learning rate after the first epoch with everything open, if it changes.
    pub later_lr: Option<f32>,
}

impl FinetuneOptions {
    /// The learning rate of `epoch`, and whether the convolutions train in it.
    pub fn epoch(&self, epoch: usize) -> (f32, bool) {
        let lr = match self.later_lr {
            Some(later) if epoch > self.freeze_epochs => later,
            _ => self.lr,
        };
        (lr, epoch >= self.freeze_epochs)
    }
}

/// A batch of images as `[n, channels, size, size]`, with the samples that loaded; the
/// errors of those that did not.
fn load_batch(samples: &[&Sample], t: &Transform) -> (Vec<f32>, Vec<usize>, Vec<IoError>) {
    let loaded: Vec<_> = samples.par_iter().map(|s| s.load(t)).collect();
    let (mut pixels, mut ok, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, image) in loaded.into_iter().enumerate() {
        match image {
            Ok(p) => {
                pixels.extend_from_slice(&p);
                ok.push(i);
            }
            Err(e) => failed.push(e),
        }
    }
    (pixels, ok, failed)
}

/// The softmax probabilities `[n, classes]` of `model` (evaluation mode) on `samples`, with
/// the indices of the samples that loaded and the errors of those that did not.
pub fn predict(
    gpu: &Arc<Gpu>,
    model: &ResNet,
    samples: &[Sample],
    t: &Transform,
    batch: usize,
) -> Result<(Vec<f64>, Vec<usize>, Vec<IoError>)> {
    let (mut probabilities, mut kept, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (c, chunk) in samples.chunks(batch.max(1)).enumerate() {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let (pixels, ok, errors) = load_batch(&refs, t);
        failed.extend(errors);
        if ok.is_empty() {
            continue;
        }
        let x = Tensor::from_slice(gpu, &[ok.len(), t.channels, t.size, t.size], &pixels)?;
        let p = no_grad(|| model.forward(&Var::constant(x), false)?.softmax())?;
        probabilities.extend(p.value().to_vec()?.into_iter().map(f64::from));
        kept.extend(ok.into_iter().map(|i| c * batch.max(1) + i));
    }
    Ok((probabilities, kept, failed))
}

/// What training left: the best epoch (0-based), its validation accuracy, and the training
/// images that could not be read (each named once).
pub struct Finetuned {
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    pub unreadable: BTreeSet<Failure>,
}

/// Trains `model` (with its classifier) on `train`, writing the weights of the epoch with
/// the best accuracy on `val` (the first such) to `best`; `on_epoch` hears every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train(
    gpu: &Arc<Gpu>,
    model: &ResNet,
    train: &[Sample],
    val: &[Sample],
    t: &Transform,
    options: &FinetuneOptions,
    best: &Path,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<Finetuned> {
    let named = nn::named_parameters(model);
    // The paper freezes the backbone's convolutions; theirs are the only 4-d parameters.
    let convolutions: Vec<Var> = named
        .iter()
        .filter(|(_, p)| p.value().shape().len() == 4)
        .map(|(_, p)| p.clone())
        .collect();
    let params = named.into_iter().map(|(_, p)| p).collect();
    let mut adam = Adam::new(params, options.lr).weight_decay(options.weight_decay);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut result = Finetuned {
        best_epoch: 0,
        best_val_accuracy: f64::NEG_INFINITY,
        unreadable: BTreeSet::new(),
    };
    for epoch in 0..options.epochs {
        let (lr, convolutions_train) = options.epoch(epoch);
        adam.lr = lr;
        // As requires_grad=False: no gradient computed, so Adam leaves them (and their
        // moments and step counts) alone.
        for p in &convolutions {
            p.set_requires_grad(convolutions_train)?;
        }
        order.shuffle(&mut rng);
        let mut losses = Vec::new();
        for batch in order.chunks(options.batch.max(1)) {
            let samples: Vec<&Sample> = batch.iter().map(|&i| &train[i]).collect();
            let (pixels, ok, failed) = load_batch(&samples, t);
            result.unreadable.extend(failed.iter().map(Failure::from));
            if ok.is_empty() {
                continue;
            }
            let labels: Vec<usize> = ok.iter().map(|&i| samples[i].label).collect();
            let x = Var::constant(Tensor::from_slice(
                gpu,
                &[ok.len(), t.channels, t.size, t.size],
                &pixels,
            )?);
            adam.zero_grad();
            let loss = model.forward(&x, true)?.cross_entropy_classes(&labels)?;
            loss.backward()?;
            adam.step()?;
            losses.push(loss.value().to_vec()?[0] as f64);
        }
        let (probabilities, kept, _) = predict(gpu, model, val, t, options.batch)?;
        let labels: Vec<usize> = kept.iter().map(|&i| val[i].label).collect();
        let k = probabilities.len() / labels.len().max(1);
        let val_accuracy = accuracy(&labels, &probabilities, k);
        let loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        on_epoch(&EpochLog {
            epoch,
            loss,
            val_accuracy,
        });
        if val_accuracy > result.best_val_accuracy {
            result.best_epoch = epoch;
            result.best_val_accuracy = val_accuracy;
            nn::save(model, best)?;
        }
    }
    Ok(result)
}

/// The network saved at `best`, built as `like`.
pub fn reload(gpu: &Arc<Gpu>, like: &ResNet, best: &Path) -> Result<ResNet> {
    let mut state = StateDict::load(gpu, best)?;
    let model = ResNet::new(like.config, &mut state)?;
    state.finish()?;
    Ok(model)
}
