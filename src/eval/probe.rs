//! The `linear` protocol, the standard probe of a self-supervised encoder: the encoder stays
//! frozen (evaluation mode), its pooled features of every image are computed once, and a
//! linear classifier is trained on them with Adam and cross-entropy, the epoch with the best
//! validation accuracy kept (as the paper's `ModelCheckpoint(monitor="val/accuracy")`).
//! Features are standardised with the training split's mean and deviation first, which
//! leaves the probe linear and lets one learning rate suit every encoder.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

use super::dataset::{Sample, Transform};
use super::encoder::Encoder;
use super::metrics::accuracy;
use crate::autograd::{Var, no_grad};
use crate::io::IoError;
use crate::nn::{self, Linear, Random};
use crate::optim::{Adam, Optimizer};
use crate::{Gpu, Result, Tensor};

/// One split's features `[n, dim]` and labels; images that could not be read are left out
/// and their errors kept.
pub struct Features {
    pub dim: usize,
    pub values: Vec<f32>,
    pub labels: Vec<usize>,
    pub ids: Vec<String>,
    pub failed: Vec<IoError>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The frozen encoder's features of `samples`, `batch` images per forward pass; `progress`
/// hears how many images each pass finished.
pub fn embed(
    gpu: &Arc<Gpu>,
    encoder: &Encoder,
    samples: &[Sample],
    transform: &Transform,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Features> {
    let dim = encoder.model.feature_len();
    let mut out = Features {
        dim,
        values: Vec::new(),
        labels: Vec::new(),
        ids: Vec::new(),
        failed: Vec::new(),
    };
    let side = transform.size;
    for chunk in samples.chunks(batch.max(1)) {
        let loaded: Vec<_> = chunk.par_iter().map(|s| s.load(transform)).collect();
        let mut pixels = Vec::new();
        let mut members = Vec::new();
        for (sample, image) in chunk.iter().zip(loaded) {
            match image {
                Ok(p) => {
                    pixels.extend_from_slice(&p);
                    members.push(sample);
                }
                Err(e) => out.failed.push(e),
            }
        }
        if !members.is_empty() {
            let x = Tensor::from_slice(
                gpu,
                &[members.len(), transform.channels, side, side],
                &pixels,
            )?;
            let features = no_grad(|| encoder.model.features(&Var::constant(x), false))?;
            out.values.extend(features.value().to_vec()?);
            out.labels.extend(members.iter().map(|s| s.label));
            out.ids.extend(members.iter().map(|s| s.id.clone()));
        }
        progress(chunk.len());
    }
    Ok(out)
}

/// The probe's training settings.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOptions {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub weight_decay: f32,
    pub seed: u64,
}

/// One epoch of training, as `train.jsonl` has it.
#[derive(Clone, Debug, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// The mean training loss over the epoch's batches.
    pub loss: f64,
    pub val_accuracy: f64,
}

/// A trained linear classifier on standardised features.
pub struct Probe {
    gpu: Arc<Gpu>,
    classes: usize,
    dim: usize,
    /// The training features' per-dimension mean and standard deviation.
    mean: Vec<f32>,
    std: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// The epoch whose weights these are (0-based).
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
}

impl Probe {
    /// Trains on `train`, keeping the epoch with the best accuracy on `val` (the first such);
    /// `on_epoch` hears every epoch.
    pub fn train(
        gpu: &Arc<Gpu>,
        train: &Features,
        val: &Features,
        classes: usize,
        options: &ProbeOptions,
        on_epoch: &mut dyn FnMut(&EpochLog),
    ) -> Result<Probe> {
        let dim = train.dim;
        let (mean, std) = standardisation(&train.values, dim);
        let x_train = standardise(&train.values, &mean, &std);
        let linear = Linear::new(&mut Random::new(gpu, options.seed), "fc", dim, classes)?;
        let mut adam =
            Adam::new(nn::parameters(&linear), options.lr).weight_decay(options.weight_decay);
        let x_val = Var::constant(Tensor::from_slice(
            gpu,
            &[val.len(), dim],
            &standardise(&val.values, &mean, &std),
        )?);
        let mut probe = Probe {
            gpu: gpu.clone(),
            classes,
            dim,
            mean,
            std,
            weight: linear.weight.value().to_vec()?,
            bias: linear.bias.value().to_vec()?,
            best_epoch: 0,
            best_val_accuracy: f64::NEG_INFINITY,
        };
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = StdRng::seed_from_u64(options.seed);
        for epoch in 0..options.epochs {
            order.shuffle(&mut rng);
            let mut losses = Vec::new();
            for batch in order.chunks(options.batch.max(1)) {
                let rows: Vec<f32> = batch
                    .iter()
                    .flat_map(|&i| x_train[i * dim..(i + 1) * dim].iter().copied())
                    .collect();
                let labels: Vec<usize> = batch.iter().map(|&i| train.labels[i]).collect();
                let x = Var::constant(Tensor::from_slice(gpu, &[batch.len(), dim], &rows)?);
                let loss =
                    adam.train_step(&mut || linear.forward(&x)?.cross_entropy_classes(&labels))?;
                losses.push(loss.value().to_vec()?[0] as f64);
            }
            let logits = no_grad(|| linear.forward(&x_val))?.value().to_vec()?;
            let logits: Vec<f64> = logits.into_iter().map(f64::from).collect();
            let val_accuracy = accuracy(&val.labels, &logits, classes);
            let loss = losses.iter().sum::<f64>() / losses.len() as f64;
            on_epoch(&EpochLog {
                epoch,
                loss,
                val_accuracy,
            });
            if val_accuracy > probe.best_val_accuracy {
                probe.weight = linear.weight.value().to_vec()?;
                probe.bias = linear.bias.value().to_vec()?;
                probe.best_epoch = epoch;
                probe.best_val_accuracy = val_accuracy;
            }
        }
        Ok(probe)
    }

    /// The softmax probabilities `[n, classes]` of raw (unstandardised) features `[n, dim]`.
    pub fn probabilities(&self, features: &[f32]) -> Result<Vec<f64>> {
        let n = features.len() / self.dim;
        if n == 0 {
            return Ok(Vec::new());
        }
        let x = standardise(features, &self.mean, &self.std);
        let x = Var::constant(Tensor::from_slice(&self.gpu, &[n, self.dim], &x)?);
        let weight = Var::constant(Tensor::from_slice(
            &self.gpu,
            &[self.classes, self.dim],
            &self.weight,
        )?);
        let bias = Var::constant(Tensor::from_slice(&self.gpu, &[self.classes], &self.bias)?);
        let p = no_grad(|| x.linear(&weight, Some(&bias))?.softmax())?;
        Ok(p.value().to_vec()?.into_iter().map(f64::from).collect())
    }
}

/// Per-dimension mean and standard deviation (population; 1 where a dimension is constant).
fn standardisation(values: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (values.len() / dim).max(1) as f64;
    let mut mean = vec![0.0f64; dim];
    for row in values.chunks(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n;
        }
    }
    let mut var = vec![0.0f64; dim];
    for row in values.chunks(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    let std = var
        .iter()
        .map(|v| if *v > 1e-12 { v.sqrt() as f32 } else { 1.0 })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

fn standardise(values: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    values
        .chunks(mean.len())
        .flat_map(|row| row.iter().zip(mean).zip(std).map(|((v, m), s)| (v - m) / s))
        .collect()
}
