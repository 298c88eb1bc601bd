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
use crate::dist::{self, Collective, Reduce, Solo, ThreadGroup};
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

    /// Refuses a split over `ranks` replicas that leaves one fewer than 2 slices of a batch
    /// (its BatchNorm needs 2) or a queue shorter than its share of a batch.
    pub fn check_ranks(&self, ranks: usize) -> Result<(), RunError> {
        if ranks > 1 && self.batch / ranks < 2 {
            return Err(RunError::Config(format!(
                "a batch of {} over {ranks} replicas leaves some fewer than 2 slices, which \
                 BatchNorm needs: use a batch of {} or more",
                self.batch,
                2 * ranks
            )));
        }
        if self.queue_length > 0 && self.queue_length / ranks < self.batch.div_ceil(ranks) {
            return Err(RunError::Config(format!(
                "a queue of {} over {ranks} replicas is shorter than their shares of a batch of {}",
                self.queue_length, self.batch
            )));
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
    /// Data-parallel: rank 0's time summing the gradients over the replicas (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_ms: Option<f64>,
}

/// What a run is about to do.
pub struct RunStart<'a> {
    pub adapter: String,
    /// Replicas computing together (devices of this process, or MPI ranks).
    pub ranks: usize,
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

/// Where a run's replicas compute. Data-parallel, each replica takes an even share of every
/// batch (`batch` is the total over replicas, so a run's steps do not depend on how many
/// there are), the codes and gradients are computed over the whole batch, and BatchNorm's
/// statistics are each replica's own (as FB's SwAV without SyncBN). Rank 0 writes the run's
/// files; every rank appends the slices it could not decode to `failures.jsonl`.
pub enum Replicas<'a> {
    /// One replica, on the GPU options' adapter.
    One,
    /// One replica per device of this process, each on the adapter at that place of `lim
    /// info`'s list (a place may repeat: two replicas on one adapter).
    Devices(Vec<usize>),
    /// This process is one rank of a job of several (MPI), on the GPU options' adapter; the
    /// run folder must be visible to every rank.
    Rank(&'a dyn Collective),
}

impl Replicas<'_> {
    /// Whether this process holds rank 0, which writes the run's files and tells the user.
    pub fn leads(&self) -> bool {
        match self {
            Replicas::Rank(comm) => comm.rank() == 0,
            _ => true,
        }
    }

    fn count(&self) -> usize {
        match self {
            Replicas::One => 1,
            Replicas::Devices(d) => d.len(),
            Replicas::Rank(comm) => comm.size(),
        }
    }
}

/// Rank 0's outcome of setting up the run, told to every rank: the others go on only if it
/// succeeded.
fn agree(replicas: &Replicas, prepared: Result<(), RunError>) -> Result<(), RunError> {
    let Replicas::Rank(comm) = replicas else {
        return prepared;
    };
    let mut ok = [prepared.is_ok() as u8 as f32];
    comm.broadcast(&mut ok, 0)?;
    match (prepared, ok[0] == 1.0) {
        (Err(e), _) => Err(e),
        (Ok(_), false) => Err(RunError::Config(
            "rank 0 could not set up the run: its message says why".into(),
        )),
        (Ok(()), true) => Ok(()),
    }
}

/// Starts a run in the empty (or new) folder `root` on `slices`.
pub fn start(
    gpu_options: &GpuOptions,
    mut config: PretrainConfig,
    slices: &[PathBuf],
    root: &Path,
    show_crops: bool,
    observer: &mut dyn Observer,
    replicas: &Replicas,
) -> Result<RunSummary, RunError> {
    config.check()?;
    config.check_ranks(replicas.count())?;
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
    let absolute: Vec<PathBuf> = slices
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let prepared = match replicas.leads() {
        true => create(&run, &config, &absolute),
        false => Ok(()),
    };
    agree(replicas, prepared)?;
    execute_all(
        gpu_options,
        &config,
        &absolute,
        &run,
        None,
        show_crops,
        observer,
        replicas,
    )
}

/// Writes a new run's folder: its slices and config.
fn create(run: &RunDir, config: &PretrainConfig, slices: &[PathBuf]) -> Result<(), RunError> {
    if run.config().exists() {
        return Err(RunError::Config(format!(
            "{} already holds a run: continue it with --resume, or choose another folder",
            run.root.display()
        )));
    }
    std::fs::create_dir_all(run.checkpoints()).map_err(|e| IoError::io(&run.checkpoints(), e))?;
    let list: String = slices
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    write_atomic(&run.slices(), list.as_bytes())?;
    let json = serde_json::to_vec_pretty(config).expect("the config serialises");
    write_atomic(&run.config(), &json)?;
    let _ = std::fs::remove_file(run.log());
    Ok(())
}

/// Continues the run in `root` from its last checkpoint (or from the start if it has none),
/// with the settings it was started with.
pub fn resume(
    gpu_options: &GpuOptions,
    root: &Path,
    observer: &mut dyn Observer,
    replicas: &Replicas,
) -> Result<RunSummary, RunError> {
    let run = RunDir {
        root: root.to_path_buf(),
    };
    let text = std::fs::read_to_string(run.config()).map_err(|e| IoError::io(&run.config(), e))?;
    let config: PretrainConfig = serde_json::from_str(&text)
        .map_err(|e| IoError::invalid(&run.config(), format!("not a run's config: {e}")))?;
    config.check()?;
    config.check_ranks(replicas.count())?;
    let list = std::fs::read_to_string(run.slices()).map_err(|e| IoError::io(&run.slices(), e))?;
    let slices: Vec<PathBuf> = list.lines().map(PathBuf::from).collect();
    let checkpoint = run.last().exists().then(|| run.last());
    execute_all(
        gpu_options,
        &config,
        &slices,
        &run,
        checkpoint,
        false,
        observer,
        replicas,
    )
}

/// An observer for replicas other than the first: rank 0 tells the user.
struct Quiet;

impl Observer for Quiet {
    fn start(&mut self, _: &RunStart) {}
    fn step(&mut self, _: &StepLog) {}
    fn checkpoint(&mut self, _: &Path, _: usize) {}
    fn unreadable(&mut self, _: &IoError) {}
}

/// Runs every replica of this process: one, one thread per device, or this MPI rank.
#[allow(clippy::too_many_arguments)]
fn execute_all(
    gpu_options: &GpuOptions,
    config: &PretrainConfig,
    slices: &[PathBuf],
    dir: &RunDir,
    checkpoint: Option<PathBuf>,
    show_crops: bool,
    observer: &mut dyn Observer,
    replicas: &Replicas,
) -> Result<RunSummary, RunError> {
    let devices = match replicas {
        Replicas::One => {
            let work = Work {
                config,
                slices,
                dir,
                checkpoint,
                comm: &Solo,
            };
            return execute(gpu_options, work, show_crops, observer);
        }
        Replicas::Rank(comm) => {
            let work = Work {
                config,
                slices,
                dir,
                checkpoint,
                comm: *comm,
            };
            return match comm.rank() {
                0 => execute(gpu_options, work, show_crops, observer),
                _ => execute(gpu_options, work, false, &mut Quiet),
            };
        }
        Replicas::Devices(devices) => devices,
    };
    let mut group = ThreadGroup::new(devices.len()).into_iter();
    let first = group.next().expect("at least one device");
    let on = |device: usize| GpuOptions {
        device: Some(device),
        ..gpu_options.clone()
    };
    let results = std::thread::scope(|scope| {
        let others: Vec<_> = group
            .zip(&devices[1..])
            .map(|(rank, &device)| {
                let checkpoint = checkpoint.clone();
                let options = on(device);
                std::thread::Builder::new()
                    .name(format!("lim-replica-{}", rank.rank()))
                    .spawn_scoped(scope, move || {
                        let work = Work {
                            config,
                            slices,
                            dir,
                            checkpoint,
                            comm: &rank,
                        };
                        let out = execute(&options, work, false, &mut Quiet);
                        if out.is_ok() {
                            rank.finish();
                        }
                        out
                    })
                    .expect("a thread for each device")
            })
            .collect();
        let work = Work {
            config,
            slices,
            dir,
            checkpoint: checkpoint.clone(),
            comm: &first,
        };
        let lead = execute(&on(devices[0]), work, show_crops, observer);
        if lead.is_ok() {
            first.finish();
        } else {
            drop(first);
        }
        let rest: Vec<Result<RunSummary, RunError>> = others
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|panic| {
                    Err(RunError::Config(format!(
                        "a replica panicked: {}",
                        crate::error::panic_text(&*panic)
                    )))
                })
            })
            .collect();
        (lead, rest)
    });
    let (lead, rest) = results;
    // A replica that failed first is the cause; the others only lost it.
    let lost = |e: &RunError| matches!(e, RunError::Lim(crate::Error::Collective(_)));
    match lead {
        Err(e) if lost(&e) => Err(rest
            .into_iter()
            .filter_map(Result::err)
            .find(|e| !lost(e))
            .unwrap_or(e)),
        Err(e) => Err(e),
        Ok(summary) => match rest.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(summary),
        },
    }
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
    exchange: Option<Duration>,
}

/// What one replica is to do.
struct Work<'a> {
    config: &'a PretrainConfig,
    slices: &'a [PathBuf],
    dir: &'a RunDir,
    checkpoint: Option<PathBuf>,
    comm: &'a dyn Collective,
}

struct Run<'a> {
    config: &'a PretrainConfig,
    dir: &'a RunDir,
    comm: &'a dyn Collective,
    gpu: Arc<Gpu>,
    trainer: SwavTrainer,
    queue: Option<Queue>,
    losses: Vec<(f64, f64)>,
    last_checkpoint: Option<PathBuf>,
    since: Instant,
}

fn execute(
    gpu_options: &GpuOptions,
    work: Work,
    show_crops: bool,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    let Work {
        config,
        slices,
        dir,
        checkpoint,
        comm,
    } = work;
    let leads = comm.rank() == 0;
    let _lock = match leads {
        true => Some(crate::io::lock::OutputLock::acquire(&dir.root)?),
        false => None,
    };
    let mut options = gpu_options.clone();
    let user_tuning = options.tuning.clone();
    options.tuning = match config.autotune {
        true => Tuning::Dir(dir.autotune()),
        false => Tuning::Off,
    };
    let gpu = Gpu::new(&options)?;
    let tune_file = gpu.tune_cache_path().map(Path::to_path_buf);
    // A new run starts from the user's choices, so runs of the same seed compute alike.
    if let (true, None, Some(file), Tuning::Disk) = (leads, &checkpoint, &tune_file, &user_tuning)
        && let Some(user) = crate::gpu::cache_dir().map(|d| d.join(file.file_name().unwrap()))
        && user.exists()
        && !file.exists()
    {
        std::fs::create_dir_all(dir.autotune()).map_err(|e| IoError::io(&dir.autotune(), e))?;
        std::fs::copy(&user, file).map_err(|e| IoError::io(file, e))?;
    }
    // Every replica's kernel choices start from the ones rank 0 just copied (the autotuner
    // reads its file on first use, after this).
    dist::barrier(comm)?;
    config.precision.check(&gpu)?;
    let swav = config.swav_config()?;
    let (model, first_step, queue, buffers, scale) = match &checkpoint {
        Some(path) => restore(&gpu, swav, path, comm)?,
        None => (
            Swav::new(swav, &mut Random::new(&gpu, config.seed))?,
            0,
            None,
            Vec::new(),
            None,
        ),
    };
    dist::broadcast_state(&model, comm)?;
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
    let losses = match leads {
        true => truncate_log(&dir.log(), first_step)?,
        false => Vec::new(),
    };
    observer.start(&RunStart {
        adapter: gpu.describe(),
        ranks: comm.size(),
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
        comm,
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
        part: (comm.rank(), comm.size()),
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
        // Every rank learns the batch's size, and whether any share is too small to step.
        let local = batch.images.len();
        let mut counts = [local as f32, (local < 2) as u8 as f32];
        comm.all_reduce(&mut counts, Reduce::Sum)?;
        if counts[1] > 0.0 {
            return Err(RunError::Config(match comm.size() {
                1 => format!(
                    "batch {} of epoch {} has {local} readable slices; a step needs 2",
                    batch.index, batch.epoch
                ),
                n => format!(
                    "batch {} of epoch {}: a replica's share has fewer than 2 readable \
                     slices, which its BatchNorm needs ({} of the {} replicas)",
                    batch.index, batch.epoch, counts[1], n
                ),
            }));
        }
        let total_images = counts[0] as usize;
        let mut rng = StdRng::seed_from_u64(step_seed(config.seed, step));
        let sizes: Vec<_> = batch.images.iter().map(|i| (i.width, i.height)).collect();
        let views = config.crops.sample(&mut rng, &sizes);
        let crops = config.crops.apply(&gpu, &batch.images, &views)?;
        if show_crops && leads && step == first_step {
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
            let length = dist::split(config.queue_length, comm.rank(), comm.size()).len();
            run.queue = Some(Queue::new(&gpu, 2, length, config.dim)?);
        }
        let lr = schedule.lr(step);
        let out = run.trainer.step(
            &crops,
            batch.images.len(),
            lr as f32,
            frozen,
            run.queue.as_mut(),
            comm,
        )?;
        // The batch's mean prediction: this share's part of it.
        let prediction = no_grad(|| {
            let mean = out
                .scores
                .scale(1.0 / config.temperature)?
                .rows(RowOp::Softmax)?
                .mean(0)?;
            match comm.size() {
                1 => Ok(mean),
                _ => mean.scale(local as f32 / total_images as f32),
            }
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
            exchange: out.exchange,
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
            if let (true, Some(file), Tuning::Disk, Some(user_dir)) =
                (leads, &tune_file, &user_tuning, crate::gpu::cache_dir())
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
    /// Reads the pending steps' losses and predictions in one go (summed over the replicas'
    /// shares), stops on a non-finite loss, and logs and plots the rest (rank 0).
    fn report(
        &mut self,
        pending: Vec<Pending>,
        observer: &mut dyn Observer,
    ) -> Result<(), RunError> {
        let tensors: Vec<&Tensor> = pending
            .iter()
            .flat_map(|p| [&p.loss, &p.prediction])
            .collect();
        let mut values = Tensor::to_vecs(&tensors)?;
        if self.comm.size() > 1 {
            let mut flat = values.concat();
            self.comm.all_reduce(&mut flat, Reduce::Sum)?;
            let mut rest = &flat[..];
            for v in values.iter_mut() {
                let (head, tail) = rest.split_at(v.len());
                v.copy_from_slice(head);
                rest = tail;
            }
        }
        let elapsed = self.since.elapsed();
        self.since = Instant::now();
        let images_per_s = (pending.len() * self.config.batch) as f64 / elapsed.as_secs_f64();
        let leads = self.comm.rank() == 0;
        let mut log = match leads {
            true => Some(jsonl::Log::append(&self.dir.log())?),
            false => None,
        };
        for (p, v) in pending.iter().zip(values.chunks(2)) {
            let loss = v[0][0];
            if !loss.is_finite() {
                return Err(RunError::NonFinite {
                    step: p.step,
                    loss,
                    checkpoint: self.last_checkpoint.clone(),
                });
            }
            let Some(log) = log.as_mut() else {
                continue;
            };
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
                exchange_ms: p.exchange.map(|d| d.as_secs_f64() * 1e3),
            };
            log.write(&line)?;
            self.losses.push((p.step as f64, loss as f64));
            observer.step(&line);
        }
        if !leads {
            return Ok(());
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

    /// Writes `checkpoints/step-NNNNNNN.safetensors` and copies it to `last.safetensors`
    /// (rank 0; every rank brings its queue).
    fn checkpoint(&mut self, step: usize, epoch: usize) -> Result<PathBuf, RunError> {
        let path = self
            .dir
            .checkpoints()
            .join(format!("step-{step:07}.safetensors"));
        let queue = match &self.queue {
            Some(q) => Some(gather_queue(q, self.comm)?),
            None => None,
        };
        if self.comm.rank() != 0 {
            return Ok(path);
        }
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
            ("ranks".into(), self.comm.size().to_string()),
            (
                "rng".into(),
                "augmentation drawn from (seed, step), data order from (seed, epoch)".into(),
            ),
        ]);
        if let Some(m) = &self.trainer.mixed {
            meta.insert(LOSS_SCALE.into(), m.scale.to_string());
            meta.insert(LOSS_SCALE_GOOD_STEPS.into(), m.good_steps.to_string());
        }
        if let Some((embeddings, filled)) = queue {
            for (i, e) in embeddings.into_iter().enumerate() {
                extra.push((format!("{QUEUE}{i}"), e));
            }
            meta.insert("queue_filled".into(), filled.to_string());
        }
        nn::save_with(model, &extra, &meta, &path)?;
        copy_atomic(&path, &self.dir.last())?;
        self.last_checkpoint = Some(path.clone());
        Ok(path)
    }
}

/// The queue of every rank, in rank order (each rank's rows after the one before's), and the
/// rows filled (every rank fills as many, its share of each batch).
fn gather_queue(queue: &Queue, comm: &dyn Collective) -> Result<(Vec<Tensor>, usize), RunError> {
    let filled = dist::total(comm, queue.filled)?;
    if comm.size() == 1 {
        return Ok((queue.embeddings.clone(), filled));
    }
    let mut lengths = vec![0.0; comm.size()];
    lengths[comm.rank()] = queue.embeddings[0].shape()[0] as f32;
    comm.all_reduce(&mut lengths, Reduce::Sum)?;
    let rows: usize = lengths.iter().map(|&l| l as usize).sum();
    let before: usize = lengths[..comm.rank()].iter().map(|&l| l as usize).sum();
    let mut gathered = Vec::new();
    for e in &queue.embeddings {
        let dim = e.shape()[1];
        let mut all = vec![0.0; rows * dim];
        all[before * dim..before * dim + e.numel()].copy_from_slice(&e.to_vec()?);
        comm.all_reduce(&mut all, Reduce::Sum)?;
        gathered.push(Tensor::from_slice(e.gpu(), &[rows, dim], &all)?);
    }
    Ok((gathered, filled))
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
fn restore(
    gpu: &Arc<Gpu>,
    config: SwavConfig,
    path: &Path,
    comm: &dyn Collective,
) -> Result<Restored, RunError> {
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
    // Each rank takes its share of the queue's rows, as `gather_queue` laid them out.
    let queue = match embeddings.is_empty() {
        true => None,
        false => {
            let (rank, size) = (comm.rank(), comm.size());
            let rows = dist::split(embeddings[0].shape()[0], rank, size);
            Some(Queue {
                embeddings: embeddings
                    .iter()
                    .map(|e| e.slice_batch(rows.start, rows.len()))
                    .collect::<crate::Result<_>>()?,
                filled: dist::split(number("queue_filled")?, rank, size).len(),
            })
        }
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
