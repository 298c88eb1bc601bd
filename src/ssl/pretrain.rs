//! A whole SwAV pre-training run in a run folder: seeded data order, multi-crop, the SwAV
//! step, the learning-rate schedule, a JSONL log and a plotted loss curve, checkpoints written
//! atomically, and resumption that ends bit for bit where an unbroken run would.
//!
//! The run folder holds `config.json` (everything the run needs, so `resume` takes no other
//! settings), `slices.txt` (the slices, in order), `autotune/` (the kernel choices the run
//! computes with), `log.jsonl`, `loss.png` and `checkpoints/` (`step-NNNNNNN.safetensors` and
//! `last.safetensors`). Every random draw depends on the seed and the step alone (the data
//! order on the seed and the epoch), so a checkpoint's step is all the random state there is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{MultiCrop, Queue, Schedule, ScheduleKind, Swav, SwavConfig, SwavLoss, SwavTrainer};
use crate::autograd::no_grad;
use crate::data::{Loader, LoaderOptions};
use crate::gpu::{Gpu, GpuOptions, Tuning};
use crate::io::{Failure, IoError, copy_atomic, jsonl, write_atomic};
use crate::nn::{self, Arch, Random, ResNetConfig, StateDict};
use crate::ops::rows::RowOp;
use crate::optim::{LossScale, Sgd};
use crate::plot::{self, Series};
use crate::tensor::{DType, Tensor};

/// What a count of prototype-freezing is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Epochs,
    Steps,
}

impl std::str::FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Unit, String> {
        match s {
            "epochs" => Ok(Unit::Epochs),
            "steps" => Ok(Unit::Steps),
            other => Err(format!("`{other}` is not a unit: use epochs or steps")),
        }
    }
}

/// What the backbone computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32: the default and the reference.
    #[default]
    F32,
    /// Mixed precision where the adapter has SHADER_F16: the backbone's convolutions take f16
    /// operands (f32 sums), weights stay f32, and a dynamic loss scale skips steps whose
    /// gradients overflow, as PyTorch's autocast and GradScaler.
    F16,
}

impl Precision {
    /// The operands the backbone's convolutions take.
    pub fn operands(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }

    /// Refuses f16 where `gpu` lacks SHADER_F16.
    pub fn check(self, gpu: &Gpu) -> Result<(), RunError> {
        if self == Precision::F16 && !gpu.features().contains(wgpu::Features::SHADER_F16) {
            return Err(RunError::Config(format!(
                "--precision f16 needs the SHADER_F16 feature, which adapter {} lacks: use f32",
                gpu.describe()
            )));
        }
        Ok(())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(format!("`{other}` is not a precision: use f32 or f16")),
        }
    }
}

/// Everything a run is: presets fill it, the command line adjusts it, the run folder keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub preset: String,
    /// resnet18, resnet34 or resnet50, and a width multiplier.
    pub arch: String,
    pub width: f32,
    pub crops: MultiCrop,
    pub hidden: usize,
    pub dim: usize,
    pub prototypes: usize,
    pub temperature: f32,
    pub epsilon: f32,
    pub sinkhorn_iterations: usize,
    pub batch: usize,
    pub epochs: usize,
    /// Stop after this many steps (the schedule then ends there too).
    pub max_steps: Option<usize>,
    pub lr: f64,
    pub warmup_epochs: usize,
    pub schedule: ScheduleKind,
    pub momentum: f32,
    pub weight_decay: f32,
    /// The prototypes keep their initial values for this many epochs or steps.
    pub freeze_prototypes: usize,
    pub freeze_unit: Unit,
    /// FB's queue: its length (0: none) and the epoch it starts at.
    pub queue_length: usize,
    pub epoch_queue_starts: usize,
    pub seed: u64,
    pub workers: usize,
    pub prefetch: usize,
    /// A checkpoint every this many steps (0: every epoch), and at the end.
    pub checkpoint_every: usize,
    /// Losses are read back from the device every this many steps.
    pub log_every: usize,
    /// Whether kernel variants are timed (the choices then live in the run folder); a new
    /// run takes this from the GPU options (`--tuning off` turns it off).
    pub autotune: bool,
    #[serde(default)]
    pub precision: Precision,
}

impl PretrainConfig {
    /// The paper's run (less-is-more.md §3): ResNet-50, 2 x 224 + 6 x 96 px crops, 500
    /// prototypes, batch 128, LARS at 0.15 with weight decay 1e-6, 800 epochs with 10 of
    /// warmup on the schedule as its code ran it, prototypes frozen for 313 epochs.
    pub fn paper() -> PretrainConfig {
        PretrainConfig {
            preset: "paper".into(),
            arch: "resnet50".into(),
            width: 1.0,
            crops: MultiCrop::paper(),
            hidden: 2048,
            dim: 128,
            prototypes: 500,
            temperature: 0.1,
            epsilon: 0.05,
            sinkhorn_iterations: 3,
            batch: 128,
            epochs: 800,
            max_steps: None,
            lr: 0.15,
            warmup_epochs: 10,
            schedule: ScheduleKind::AsCoded,
            momentum: 0.9,
            weight_decay: 1e-6,
            freeze_prototypes: 313,
            freeze_unit: Unit::Epochs,
            queue_length: 0,
            epoch_queue_starts: 15,
            seed: 0,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch: 4,
            checkpoint_every: 0,
            log_every: 10,
            autotune: true,
            precision: Precision::F32,
        }
    }

    /// A run that takes minutes without a GPU: ResNet-18 at a quarter width, 2 x 64 + 6 x 32
    /// px crops, 15 prototypes (about a batch, so that Sinkhorn's equal partition of a batch
    /// still leaves each slice a clear code), batch 16, 200 steps with the intended schedule at FB's
    /// learning rate (LARS moves each layer by lr x 0.001 of its norm per step, so a short run
    /// needs FB's 4.8 rather than the paper's 0.15), prototypes frozen for 20 steps.
    pub fn tiny() -> PretrainConfig {
        // The paper's crops, counts and scales at 64 and 32 px.
        let mut crops = MultiCrop::paper();
        for (group, size) in crops.groups.iter_mut().zip([64, 32]) {
            group.size = size;
        }
        PretrainConfig {
            preset: "tiny".into(),
            arch: "resnet18".into(),
            width: 0.25,
            crops,
            hidden: 256,
            dim: 64,
            prototypes: 15,
            batch: 16,
            epochs: 100,
            max_steps: Some(200),
            lr: 4.8,
            warmup_epochs: 1,
            schedule: ScheduleKind::Intended,
            freeze_prototypes: 20,
            freeze_unit: Unit::Steps,
            checkpoint_every: 50,
            log_every: 5,
            ..PretrainConfig::paper()
        }
    }

    pub fn preset(name: &str) -> Result<PretrainConfig, String> {
        match name {
            "paper" => Ok(PretrainConfig::paper()),
            "tiny" => Ok(PretrainConfig::tiny()),
            other => Err(format!("`{other}` is not a preset: use paper or tiny")),
        }
    }

    /// The model the run trains.
    pub fn swav_config(&self) -> Result<SwavConfig, RunError> {
        let arch: Arch = self.arch.parse().map_err(RunError::Config)?;
        Ok(SwavConfig {
            backbone: ResNetConfig {
                arch,
                in_channels: self.crops.channels,
                width: self.width,
                num_classes: None,
            },
            hidden: self.hidden,
            dim: self.dim,
            prototypes: self.prototypes,
        })
    }

    fn check(&self) -> Result<(), RunError> {
        let bad = |why: String| Err(RunError::Config(why));
        self.swav_config()?;
        if self.batch < 2 {
            return bad(format!(
                "a batch of {} slices: BatchNorm needs 2 or more",
                self.batch
            ));
        }
        if self.crops.crops() < 2 {
            return bad("SwAV needs 2 crops or more per slice".into());
        }
        if self.queue_length > 0 && self.queue_length < self.batch {
            return bad(format!(
                "a queue of {} is shorter than a batch of {}",
                self.queue_length, self.batch
            ));
        }
        if self.epochs == 0 && self.max_steps.is_none() || self.max_steps == Some(0) {
            return bad("the run has no steps".into());
        }
        if self.log_every == 0 {
            return bad("log_every must be 1 or more".into());
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Lim(#[from] crate::Error),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(
        "step {step}: the loss is {loss}; the run stops here. {}",
        match checkpoint {
            Some(c) => format!("The last good checkpoint is {}.", c.display()),
            None => "No checkpoint was written before it.".into(),
        }
    )]
    NonFinite {
        step: usize,
        loss: f32,
        checkpoint: Option<PathBuf>,
    },
}

impl From<crate::GpuError> for RunError {
    fn from(e: crate::GpuError) -> RunError {
        RunError::Lim(e.into())
    }
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepLog {
    /// Steps done, this one included.
    pub step: usize,
    pub epoch: usize,
    pub loss: f32,
    pub lr: f64,
    pub images_per_s: f64,
    pub data_wait_ms: f64,
    /// Entropy of the batch's mean prediction over the prototypes; `entropy_max` = ln K is
    /// its value with every prototype used equally, 0 a collapse onto one.
    pub entropy: f64,
    pub entropy_max: f64,
    /// Mixed precision: the loss scale after the step, and whether the step was skipped
    /// because its gradients overflowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// What a run is about to do.
pub struct RunStart<'a> {
    pub adapter: String,
    pub slices: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
    /// Steps already done (resumed from a checkpoint), or 0.
    pub first_step: usize,
    pub schedule: &'static str,
    pub config: &'a PretrainConfig,
}

/// Hears about a run as it goes (the command line shows it).
pub trait Observer {
    fn start(&mut self, run: &RunStart);
    fn step(&mut self, log: &StepLog);
    fn checkpoint(&mut self, path: &Path, step: usize);
    /// A slice that could not be decoded; its batch goes on without it.
    fn unreadable(&mut self, error: &IoError);
}

/// The paths of a run folder.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn slices(&self) -> PathBuf {
        self.root.join("slices.txt")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log.jsonl")
    }
    /// The slices that could not be decoded, each once per process (files the listing found
    /// unreadable are counted in the summary `lim pretrain` prints before the run).
    pub fn failures(&self) -> PathBuf {
        self.root.join("failures.jsonl")
    }
    pub fn plot(&self) -> PathBuf {
        self.root.join("loss.png")
    }
    pub fn crops(&self) -> PathBuf {
        self.root.join("crops.png")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn last(&self) -> PathBuf {
        self.checkpoints().join("last.safetensors")
    }
    fn autotune(&self) -> PathBuf {
        self.root.join("autotune")
    }
}

/// How a run ended.
pub struct RunSummary {
    pub steps: usize,
    pub first_loss: Option<f32>,
    pub last_loss: Option<f32>,
    pub checkpoint: PathBuf,
}

/// Starts a run in the empty (or new) folder `root` on `slices`.
pub fn start(
    gpu_options: &GpuOptions,
    mut config: PretrainConfig,
    slices: &[PathBuf],
    root: &Path,
    show_crops: bool,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    config.check()?;
    if slices.len() < config.batch {
        return Err(RunError::Config(format!(
            "{} slices do not make one batch of {}",
            slices.len(),
            config.batch
        )));
    }
    config.autotune = gpu_options.tuning != Tuning::Off;
    let run = RunDir {
        root: root.to_path_buf(),
    };
    if run.config().exists() {
        return Err(RunError::Config(format!(
            "{} already holds a run: continue it with --resume, or choose another folder",
            root.display()
        )));
    }
    std::fs::create_dir_all(run.checkpoints()).map_err(|e| IoError::io(&run.checkpoints(), e))?;
    let absolute: Vec<PathBuf> = slices
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let list: String = absolute
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    write_atomic(&run.slices(), list.as_bytes())?;
    let json = serde_json::to_vec_pretty(&config).expect("the config serialises");
    write_atomic(&run.config(), &json)?;
    let _ = std::fs::remove_file(run.log());
    execute(
        gpu_options,
        &config,
        &absolute,
        &run,
        None,
        show_crops,
        observer,
    )
}

/// Continues the run in `root` from its last checkpoint (or from the start if it has none),
/// with the settings it was started with.
pub fn resume(
    gpu_options: &GpuOptions,
    root: &Path,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    let run = RunDir {
        root: root.to_path_buf(),
    };
    let text = std::fs::read_to_string(run.config()).map_err(|e| IoError::io(&run.config(), e))?;
    let config: PretrainConfig = serde_json::from_str(&text)
        .map_err(|e| IoError::invalid(&run.config(), format!("not a run's config: {e}")))?;
    config.check()?;
    let list = std::fs::read_to_string(run.slices()).map_err(|e| IoError::io(&run.slices(), e))?;
    let slices: Vec<PathBuf> = list.lines().map(PathBuf::from).collect();
    let checkpoint = run.last().exists().then(|| run.last());
    execute(
        gpu_options,
        &config,
        &slices,
        &run,
        checkpoint,
        false,
        observer,
    )
}

/// The seed of step `step`'s augmentation draws.
fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_add(0x632B_E59B_D9B4_E019)
}

/// A step whose loss is still on the device.
struct Pending {
    step: usize,
    epoch: usize,
    lr: f64,
    loss: Tensor,
    /// The batch's mean prediction `[K]`.
    prediction: Tensor,
    data_wait: Duration,
    loss_scale: Option<f32>,
    skipped: bool,
}

struct Run<'a> {
    config: &'a PretrainConfig,
    dir: &'a RunDir,
    gpu: Arc<Gpu>,
    trainer: SwavTrainer,
    queue: Option<Queue>,
    losses: Vec<(f64, f64)>,
    last_checkpoint: Option<PathBuf>,
    since: Instant,
}

fn execute(
    gpu_options: &GpuOptions,
    config: &PretrainConfig,
    slices: &[PathBuf],
    dir: &RunDir,
    checkpoint: Option<PathBuf>,
    show_crops: bool,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    let _lock = crate::io::lock::OutputLock::acquire(&dir.root)?;
    let mut options = gpu_options.clone();
    let user_tuning = options.tuning.clone();
    options.tuning = match config.autotune {
        true => Tuning::Dir(dir.autotune()),
        false => Tuning::Off,
    };
    let gpu = Gpu::new(&options)?;
    let tune_file = gpu.tune_cache_path().map(Path::to_path_buf);
    // A new run starts from the user's choices, so runs of the same seed compute alike.
    if let (None, Some(file), Tuning::Disk) = (&checkpoint, &tune_file, &user_tuning)
        && let Some(user) = crate::gpu::cache_dir().map(|d| d.join(file.file_name().unwrap()))
        && user.exists()
        && !file.exists()
    {
        std::fs::create_dir_all(dir.autotune()).map_err(|e| IoError::io(&dir.autotune(), e))?;
        std::fs::copy(&user, file).map_err(|e| IoError::io(file, e))?;
    }
    config.precision.check(&gpu)?;
    let swav = config.swav_config()?;
    let (model, first_step, queue, buffers, scale) = match &checkpoint {
        Some(path) => restore(&gpu, swav, path)?,
        None => (
            Swav::new(swav, &mut Random::new(&gpu, config.seed))?,
            0,
            None,
            Vec::new(),
            None,
        ),
    };
    let mut optimizer = Sgd::lars(nn::parameters(&model), config.lr as f32)
        .momentum(config.momentum, false)
        .weight_decay(config.weight_decay);
    for (i, buffer) in buffers.into_iter().enumerate() {
        if let Some(b) = buffer {
            optimizer.set_momentum_buffer(i, b)?;
        }
    }
    let trainer = SwavTrainer {
        model,
        loss: SwavLoss {
            temperature: config.temperature,
            epsilon: config.epsilon,
            iterations: config.sinkhorn_iterations,
            crops_for_assign: vec![0, 1],
        },
        optimizer,
        mixed: match config.precision {
            Precision::F32 => None,
            Precision::F16 => Some(scale.unwrap_or_default()),
        },
    };
    let per_epoch = slices.len() / config.batch;
    if per_epoch == 0 {
        return Err(RunError::Config(format!(
            "{} slices do not make one batch of {}",
            slices.len(),
            config.batch
        )));
    }
    let total = config.max_steps.unwrap_or(config.epochs * per_epoch);
    let schedule = match config.schedule {
        ScheduleKind::AsCoded => Schedule::new(
            ScheduleKind::AsCoded,
            config.lr,
            config.warmup_epochs,
            config.epochs,
            per_epoch,
        ),
        ScheduleKind::Intended => Schedule {
            kind: ScheduleKind::Intended,
            base_lr: config.lr,
            warmup_steps: config.warmup_epochs * per_epoch,
            total_steps: total,
        },
    };
    let losses = truncate_log(&dir.log(), first_step)?;
    observer.start(&RunStart {
        adapter: gpu.describe(),
        slices: slices.len(),
        steps_per_epoch: per_epoch,
        total_steps: total,
        first_step,
        schedule: config.schedule.name(),
        config,
    });
    let mut run = Run {
        config,
        dir,
        gpu: gpu.clone(),
        trainer,
        queue,
        losses,
        last_checkpoint: checkpoint,
        since: Instant::now(),
    };
    let loader_options = LoaderOptions {
        batch: config.batch,
        seed: config.seed,
        workers: config.workers,
        prefetch: config.prefetch,
    };
    let mut loader = Loader::new(
        slices.to_vec(),
        &loader_options,
        first_step / per_epoch,
        first_step % per_epoch,
    )
    .map_err(RunError::Config)?;
    let every = match config.checkpoint_every {
        0 => per_epoch,
        n => n,
    };
    let mut pending = Vec::new();
    let mut unreadable = std::collections::HashSet::new();
    for step in first_step..total {
        let batch = loader.next_batch();
        for e in &batch.failed {
            observer.unreadable(e);
            if unreadable.insert(e.path().to_path_buf()) {
                jsonl::Log::append(&dir.failures())?.write(&Failure::from(e))?;
            }
        }
        if batch.images.len() < 2 {
            return Err(RunError::Config(format!(
                "batch {} of epoch {} has {} readable slices; a step needs 2",
                batch.index,
                batch.epoch,
                batch.images.len()
            )));
        }
        let mut rng = StdRng::seed_from_u64(step_seed(config.seed, step));
        let sizes: Vec<_> = batch.images.iter().map(|i| (i.width, i.height)).collect();
        let views = config.crops.sample(&mut rng, &sizes);
        let crops = config.crops.apply(&gpu, &batch.images, &views)?;
        if show_crops && step == first_step {
            let sheet = config.crops.contact_sheet(&crops, batch.images.len(), 8)?;
            let rgb = image::DynamicImage::ImageLuma8(sheet).to_rgb8();
            plot::save_png(&rgb, &dir.crops())?;
        }
        let frozen = match config.freeze_unit {
            Unit::Epochs => batch.epoch < config.freeze_prototypes,
            Unit::Steps => step < config.freeze_prototypes,
        };
        if config.queue_length > 0
            && batch.epoch >= config.epoch_queue_starts
            && run.queue.is_none()
        {
            run.queue = Some(Queue::new(&gpu, 2, config.queue_length, config.dim)?);
        }
        let lr = schedule.lr(step);
        let out = run.trainer.step(
            &crops,
            batch.images.len(),
            lr as f32,
            frozen,
            run.queue.as_mut(),
        )?;
        let prediction = no_grad(|| {
            out.scores
                .scale(1.0 / config.temperature)?
                .rows(RowOp::Softmax)?
                .mean(0)
        })?;
        pending.push(Pending {
            step: step + 1,
            epoch: batch.epoch,
            lr,
            loss: out.loss.value().clone(),
            prediction,
            data_wait: batch.wait,
            loss_scale: run.trainer.mixed.as_ref().map(|m| m.scale),
            skipped: out.skipped,
        });
        let done = step + 1;
        let checkpoint_due = done % every == 0 || done == total;
        if pending.len() >= config.log_every || checkpoint_due {
            run.report(std::mem::take(&mut pending), observer)?;
        }
        if checkpoint_due {
            let path = run.checkpoint(done, done / per_epoch)?;
            observer.checkpoint(&path, done);
            // The kernel choices are made by now; new runs of the user's start from them.
            if let (Some(file), Tuning::Disk, Some(user_dir)) =
                (&tune_file, &user_tuning, crate::gpu::cache_dir())
                && file.exists()
                && std::fs::create_dir_all(&user_dir).is_ok()
            {
                let _ = std::fs::copy(file, user_dir.join(file.file_name().unwrap()));
            }
        }
    }
    let checkpoint = run.last_checkpoint.clone().unwrap_or_else(|| dir.last());
    let first_loss = run.losses.first().map(|l| l.1 as f32);
    let last_loss = run.losses.last().map(|l| l.1 as f32);
    Ok(RunSummary {
        steps: total,
        first_loss,
        last_loss,
        checkpoint,
    })
}

impl Run<'_> {
    /// Reads the pending steps' losses and predictions in one go, stops on a non-finite loss,
    /// and logs and plots the rest.
    fn report(
        &mut self,
        pending: Vec<Pending>,
        observer: &mut dyn Observer,
    ) -> Result<(), RunError> {
        let tensors: Vec<&Tensor> = pending
            .iter()
            .flat_map(|p| [&p.loss, &p.prediction])
            .collect();
        let values = Tensor::to_vecs(&tensors)?;
        let elapsed = self.since.elapsed();
        self.since = Instant::now();
        let images_per_s = (pending.len() * self.config.batch) as f64 / elapsed.as_secs_f64();
        let mut log = jsonl::Log::append(&self.dir.log())?;
        for (p, v) in pending.iter().zip(values.chunks(2)) {
            let loss = v[0][0];
            if !loss.is_finite() {
                return Err(RunError::NonFinite {
                    step: p.step,
                    loss,
                    checkpoint: self.last_checkpoint.clone(),
                });
            }
            let entropy = -v[1]
                .iter()
                .filter(|&&q| q > 0.0)
                .map(|&q| q as f64 * (q as f64).ln())
                .sum::<f64>();
            let line = StepLog {
                step: p.step,
                epoch: p.epoch,
                loss,
                lr: p.lr,
                images_per_s,
                data_wait_ms: p.data_wait.as_secs_f64() * 1e3,
                entropy,
                entropy_max: (self.config.prototypes as f64).ln(),
                loss_scale: p.loss_scale,
                skipped: p.skipped,
            };
            log.write(&line)?;
            self.losses.push((p.step as f64, loss as f64));
            observer.step(&line);
        }
        let title = format!(
            "SwAV loss, {} preset, {}",
            self.config.preset, self.config.arch
        );
        let curve = [Series {
            name: "loss",
            points: &self.losses,
            colour: plot::BLUE,
            markers: false,
        }];
        plot::save_png(
            &plot::line_chart(&title, "step", "loss", &curve),
            &self.dir.plot(),
        )?;
        Ok(())
    }

    /// Writes `checkpoints/step-NNNNNNN.safetensors` and copies it to `last.safetensors`.
    fn checkpoint(&mut self, step: usize, epoch: usize) -> Result<PathBuf, RunError> {
        let model = &self.trainer.model;
        let mut extra = Vec::new();
        let named = nn::named_parameters(model);
        for ((name, _), buffer) in named.iter().zip(self.trainer.optimizer.momentum_buffers()) {
            if let Some(b) = buffer {
                extra.push((format!("{OPTIMIZER}{name}"), b.clone()));
            }
        }
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("lim_version".into(), env!("CARGO_PKG_VERSION").into()),
            ("step".into(), step.to_string()),
            ("epoch".into(), epoch.to_string()),
            ("seed".into(), self.config.seed.to_string()),
            ("arch".into(), self.config.arch.clone()),
            ("width".into(), self.config.width.to_string()),
            ("in_channels".into(), self.config.crops.channels.to_string()),
            ("mean".into(), self.config.crops.mean.to_string()),
            ("std".into(), self.config.crops.std.to_string()),
            (
                "crop_size".into(),
                self.config
                    .crops
                    .groups
                    .iter()
                    .map(|g| g.size)
                    .max()
                    .unwrap_or(0)
                    .to_string(),
            ),
            ("schedule".into(), self.config.schedule.name().into()),
            (
                "precision".into(),
                format!("{:?}", self.config.precision).to_lowercase(),
            ),
            ("adapter".into(), self.gpu.describe()),
            (
                "rng".into(),
                "augmentation drawn from (seed, step), data order from (seed, epoch)".into(),
            ),
        ]);
        if let Some(m) = &self.trainer.mixed {
            meta.insert(LOSS_SCALE.into(), m.scale.to_string());
            meta.insert(LOSS_SCALE_GOOD_STEPS.into(), m.good_steps.to_string());
        }
        if let Some(q) = &self.queue {
            for (i, e) in q.embeddings.iter().enumerate() {
                extra.push((format!("{QUEUE}{i}"), e.clone()));
            }
            meta.insert("queue_filled".into(), q.filled.to_string());
        }
        let path = self
            .dir
            .checkpoints()
            .join(format!("step-{step:07}.safetensors"));
        nn::save_with(model, &extra, &meta, &path)?;
        copy_atomic(&path, &self.dir.last())?;
        self.last_checkpoint = Some(path.clone());
        Ok(path)
    }
}

/// What a checkpoint's metadata says it is.
pub const FORMAT: &str = "lim-swav-1";
/// Name prefixes of the optimiser's momentum buffers and the queue in a checkpoint.
pub const OPTIMIZER: &str = "optimizer.momentum_buffer.";
pub const QUEUE: &str = "queue.";
/// Metadata keys of mixed precision's loss scale and its run of finite steps.
const LOSS_SCALE: &str = "loss_scale";
const LOSS_SCALE_GOOD_STEPS: &str = "loss_scale_good_steps";

type Restored = (
    Swav,
    usize,
    Option<Queue>,
    Vec<Option<Tensor>>,
    Option<LossScale>,
);

/// The network, the steps done, the queue, the momentum buffers and the loss scale (of a
/// mixed-precision run) of a checkpoint.
fn restore(gpu: &Arc<Gpu>, config: SwavConfig, path: &Path) -> Result<Restored, RunError> {
    let mut state = StateDict::load(gpu, path)?;
    let meta = state.metadata().clone();
    let number = |key: &str| -> Result<usize, RunError> {
        meta.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| {
            RunError::Io(IoError::invalid(
                path,
                format!("no `{key}` in the checkpoint's metadata"),
            ))
        })
    };
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(RunError::Io(IoError::invalid(
            path,
            format!("not a {FORMAT} checkpoint"),
        )));
    }
    let step = number("step")?;
    let model = Swav::new(config, &mut state)?;
    let mut buffers = Vec::new();
    for (name, _) in nn::named_parameters(&model) {
        buffers.push(state.take(&format!("{OPTIMIZER}{name}"))?);
    }
    let mut embeddings = Vec::new();
    while let Some(e) = state.take(&format!("{QUEUE}{}", embeddings.len()))? {
        embeddings.push(e);
    }
    let queue = match embeddings.is_empty() {
        true => None,
        false => Some(Queue {
            embeddings,
            filled: number("queue_filled")?,
        }),
    };
    let scale = match meta.contains_key(LOSS_SCALE) {
        true => Some(LossScale {
            scale: meta[LOSS_SCALE]
                .parse()
                .map_err(|_| IoError::invalid(path, format!("`{LOSS_SCALE}` is not a number")))?,
            good_steps: number(LOSS_SCALE_GOOD_STEPS)? as u32,
            ..LossScale::default()
        }),
        false => None,
    };
    state.finish()?;
    Ok((model, step, queue, buffers, scale))
}

/// Keeps the log's lines up to `step` (a killed run may have logged past its last
/// checkpoint) and returns their losses.
fn truncate_log(path: &Path, step: usize) -> Result<Vec<(f64, f64)>, RunError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    let mut kept = String::new();
    let mut losses = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<StepLog>(line) else {
            continue;
        };
        if entry.step <= step {
            kept.push_str(line);
            kept.push('\n');
            losses.push((entry.step as f64, entry.loss as f64));
        }
    }
    write_atomic(path, kept.as_bytes())?;
    Ok(losses)
}
