//! Subcommands, one file each. Only this layer prints and chooses exit codes.

mod bench;
mod embed;
mod evaluate;
mod experiment;
mod export;
mod hash;
mod info;
mod preprocess;
mod pretrain;
mod reduce;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lim::gpu::{BackendChoice, GpuOptions, Tuning};
use lim::hash::{HashError, HashKind, Hasher};
use lim::preprocess::Progress;
use lim::select::Hashing;

pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(
    name = "lim",
    version,
    about = "Less is More: GPU-first selective reduction of CT data \
    and self-supervised pre-training, on any GPU wgpu reaches"
)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Refuse a volume or image whose header claims more voxels (pixels) than this, before
    /// reading it: a broken or hostile header cannot make lim allocate past it
    #[arg(long, env = "LIM_MAX_VOXELS", global = true,
          default_value_t = lim::io::limits::DEFAULT_MAX_VOXELS)]
    max_voxels: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
pub struct GpuArgs {
    /// Use the adapter whose name contains this text (case-insensitive); by default the
    /// highest-performance adapter wgpu offers
    #[arg(long, env = "LIM_ADAPTER", global = true)]
    adapter: Option<String>,
    /// Only look at one backend: vulkan, metal, dx12 or gl
    #[arg(long, env = "LIM_BACKEND", global = true)]
    backend: Option<String>,
    /// Where kernel-variant choices are kept: disk (the user's cache, timed once per
    /// adapter), memory (timed again in every run) or off (no timing: default variants)
    #[arg(long, env = "LIM_TUNING", global = true)]
    tuning: Option<String>,
    /// Keep wgpu's shader bounds checks on (lim's kernels check their own indices, so they
    /// are off on lim's own device): to measure their cost
    #[arg(long, global = true)]
    bounds_checks: bool,
}

impl GpuArgs {
    pub fn options(&self) -> Result<GpuOptions, lim::GpuError> {
        Ok(GpuOptions {
            adapter: self.adapter.clone().filter(|a| !a.trim().is_empty()),
            device: None,
            backend: self
                .backend
                .as_deref()
                .filter(|b| !b.trim().is_empty())
                .map(str::parse::<BackendChoice>)
                .transpose()?,
            tuning: self
                .tuning
                .as_deref()
                .filter(|t| !t.trim().is_empty())
                .map(str::parse::<Tuning>)
                .transpose()?
                .unwrap_or_default(),
            max_binding_bytes: None,
            bounds_checks: self.bounds_checks,
        })
    }
}

/// A progress bar that counts `len` things called `unit`, with a message after it.
pub fn counting_bar(len: u64, unit: &str) -> ProgressBar {
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}");
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(&template).expect("a valid template"))
}

/// A progress bar over volumes, for preprocess and reduce.
pub struct VolumeBar(pub ProgressBar);

impl VolumeBar {
    pub fn new() -> VolumeBar {
        VolumeBar(counting_bar(0, "volumes"))
    }
}

impl Progress for VolumeBar {
    fn start(&self, volumes: usize) {
        self.0.set_length(volumes as u64);
    }
    fn volume_done(&self, volume: &str, slices: usize) {
        self.0.set_message(format!("{volume} ({slices} slices)"));
        self.0.inc(1);
    }
}

/// Where `hash` and `reduce` compute hashes.
#[derive(clap::Args)]
pub struct HashDevice {
    /// Hash on the CPU
    #[arg(long, conflicts_with = "gpu")]
    cpu: bool,
    /// Hash on the GPU even where the adapter is a software one (there the CPU path is faster,
    /// and is used by default)
    #[arg(long)]
    gpu: bool,
}

impl HashDevice {
    pub fn hashing(&self, gpu_args: &GpuArgs, kind: HashKind) -> Result<Hashing, HashError> {
        if self.cpu {
            return Ok(Hashing::Cpu(kind));
        }
        let hasher = Hasher::from_options(&gpu_args.options()?, kind)?;
        let info = hasher.gpu().info();
        if info.device_type == wgpu::DeviceType::Cpu && !self.gpu {
            eprintln!(
                "note: {} is a software adapter: hashing on the CPU, which is faster there \
                 (--gpu hashes on the adapter anyway)",
                info.name
            );
            return Ok(Hashing::Cpu(kind));
        }
        Ok(Hashing::Gpu(hasher))
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu sees, which one lim uses, and its limits and features
    Info(info::Args),
    /// Measure kernels on the chosen adapter
    #[command(subcommand)]
    Bench(bench::Command),
    /// Turn CT volumes (NIfTI, DICOM series, NRRD) into 2-D PNG slices
    Preprocess(preprocess::Args),
    /// Perceptual hashes of images, bit for bit as Python's imagehash computes them
    Hash(hash::Args),
    /// Drop near-duplicate slices, per volume (the paper's Hash-6 by default)
    Reduce(reduce::Args),
    /// ResNet features (torchvision's pooled fc input) of images, as a .npy array
    Embed(embed::Args),
    /// Train and test a classifier on an encoder's features: downstream AUC, accuracy, F1
    Evaluate(evaluate::Args),
    /// The paper's comparison in one command: volumes -> reductions -> one SwAV encoder
    /// each -> downstream AUC against pre-training time
    Experiment(experiment::Args),
    /// SwAV pre-training of a ResNet on slices (the paper's stage 3), resumable
    Pretrain(pretrain::Args),
    /// A checkpoint in PyTorch's format, as the paper's downstream code loads it
    Export(export::Args),
}

pub fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Silences a harmless warning of the Vulkan loader's Wayland probe.
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::parse();
    lim::io::limits::set_max_voxels(cli.max_voxels);
    let result = match &cli.command {
        Command::Info(args) => info::run(&cli.gpu, args),
        Command::Bench(cmd) => bench::run(&cli.gpu, cmd),
        Command::Preprocess(args) => preprocess::run(args),
        Command::Hash(args) => hash::run(&cli.gpu, args),
        Command::Reduce(args) => reduce::run(&cli.gpu, args),
        Command::Embed(args) => embed::run(&cli.gpu, args),
        Command::Evaluate(args) => evaluate::run(&cli.gpu, args),
        Command::Experiment(args) => experiment::run(&cli.gpu, args),
        Command::Pretrain(args) => pretrain::run(&cli.gpu, args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if lim::io::disk_full(e.as_ref()) {
                eprintln!(
                    "The disk is full. Free some space and run the same command again: every \
                     file already written is whole and is kept, and the run goes on from there."
                );
            }
            ExitCode::FAILURE
        }
    }
}
