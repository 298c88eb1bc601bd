//! `lim pretrain`: SwAV pre-training on slices, the paper's stage 3, into a run folder that
//! `--resume` continues.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lim::data::find_slices;
use lim::io::IoError;
use lim::ssl::ScheduleKind;
use lim::ssl::pretrain::{
    self, Observer, Precision, PretrainConfig, Replicas, RunStart, StepLog, Unit,
};

use super::{CliResult, GpuArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Slice folders (searched recursively), `lim reduce` output folders (their kept slices)
    /// or text files with one path a line
    #[arg(required_unless_present = "resume")]
    slices: Vec<PathBuf>,
    /// The run folder: config.json, log.jsonl, loss.png, checkpoints/
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint, with its own settings
    #[arg(long, conflicts_with_all = ["slices", "out", "preset"])]
    resume: Option<PathBuf>,
    /// paper: ResNet-50, 2x224 + 6x96 crops, 500 prototypes, batch 128, 800 epochs, the
    /// as-coded schedule; tiny: ResNet-18 at width 1/4, 2x64 + 6x32, 200 steps
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// resnet18, resnet34 or resnet50
    #[arg(long)]
    arch: Option<String>,
    /// Width multiplier of the backbone (1 is torchvision's)
    #[arg(long)]
    width: Option<f32>,
    /// Input channels: 3 (the grey slice replicated, torchvision's stem) or 1
    #[arg(long)]
    in_channels: Option<usize>,
    /// Crops per slice as COUNTxSIZE per group, e.g. 2x224,6x96
    #[arg(long, value_delimiter = ',')]
    crops: Vec<String>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop after this many steps (the intended schedule then ends there)
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Base learning rate of LARS
    #[arg(long)]
    lr: Option<f64>,
    /// intended (warmup and cosine over the run) or as-coded (the paper's code: warmup of
    /// 10 steps, a cosine of period 1580 steps)
    #[arg(long)]
    schedule: Option<ScheduleKind>,
    #[arg(long)]
    warmup_epochs: Option<usize>,
    #[arg(long)]
    prototypes: Option<usize>,
    /// Hidden width and output dimension of the projection head
    #[arg(long)]
    hidden: Option<usize>,
    #[arg(long)]
    dim: Option<usize>,
    /// Keep the prototypes fixed for this many --freeze-unit
    #[arg(long)]
    freeze_prototypes: Option<usize>,
    /// epochs (the paper's code) or steps (facebookresearch/swav)
    #[arg(long)]
    freeze_unit: Option<Unit>,
    /// FB's queue of past embeddings for Sinkhorn (0: none), from this epoch on
    #[arg(long)]
    queue_length: Option<usize>,
    #[arg(long)]
    epoch_queue_starts: Option<usize>,
    /// Threads decoding slices ahead of the GPU, and batches decoded ahead
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long)]
    prefetch: Option<usize>,
    /// A checkpoint every N steps (0: every epoch), and at the end
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Read the loss back every N steps (the log still has every step)
    #[arg(long)]
    log_every: Option<usize>,
    /// Write RUN/crops.png: the first batch's crops, as the network sees them
    #[arg(long)]
    show_crops: bool,
    /// f32, or f16: mixed precision where the adapter has SHADER_F16 (the backbone's
    /// convolutions take f16 operands, weights stay f32, a dynamic loss scale)
    #[arg(long)]
    precision: Option<Precision>,
    /// Data-parallel over devices of this machine: `all` (every adapter like the one lim
    /// picks) or places in `lim info`'s list, e.g. 0,1 (0,0: two replicas on one adapter).
    /// The batch is split between them. Across machines, start lim under `mpirun` instead
    #[arg(long)]
    devices: Option<String>,
}

/// The places in `lim info`'s list `--devices` names.
fn devices(spec: &str, options: &lim::GpuOptions) -> Result<Vec<usize>, String> {
    if spec.trim() == "all" {
        return lim::gpu::alike(options).map_err(|e| e.to_string());
    }
    let places: Vec<usize> = spec
        .split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--devices: `{spec}` is neither `all` nor places like 0,1"))?;
    let count = lim::gpu::survey(options).adapters.len();
    match places.iter().find(|&&d| d >= count) {
        Some(d) => Err(format!(
            "--devices: there is no device {d}; `lim info` lists {count} adapters (0..{count})"
        )),
        None if places.is_empty() => Err("--devices names no device".into()),
        None => Ok(places),
    }
}

fn crop_groups(config: &mut PretrainConfig, specs: &[String]) -> Result<(), String> {
    if specs.is_empty() {
        return Ok(());
    }
    if specs.len() != config.crops.groups.len() {
        return Err(format!(
            "--crops takes {} groups (COUNTxSIZE, the first from the large scale range, the \
             second from the small), got {specs:?}",
            config.crops.groups.len()
        ));
    }
    for (group, spec) in config.crops.groups.iter_mut().zip(specs) {
        let parsed = spec
            .split_once('x')
            .and_then(|(c, s)| Some((c.trim().parse().ok()?, s.trim().parse().ok()?)));
        let Some((count, size)) = parsed else {
            return Err(format!("--crops: `{spec}` is not COUNTxSIZE"));
        };
        (group.count, group.size) = (count, size);
    }
    Ok(())
}

fn configure(args: &Args) -> Result<PretrainConfig, String> {
    let mut c = PretrainConfig::preset(&args.preset)?;
    macro_rules! set {
        ($($field:ident),*) => {$(
            if let Some(v) = args.$field.clone() {
                c.$field = v;
            }
        )*};
    }
    set!(
        arch,
        width,
        epochs,
        batch,
        seed,
        lr,
        schedule,
        warmup_epochs,
        prototypes,
        hidden,
        dim
    );
    set!(
        freeze_prototypes,
        freeze_unit,
        queue_length,
        epoch_queue_starts,
        workers,
        prefetch
    );
    set!(checkpoint_every, log_every, precision);
    if let Some(steps) = args.max_steps {
        c.max_steps = Some(steps);
    } else if args.epochs.is_some() {
        c.max_steps = None;
    }
    if let Some(channels) = args.in_channels {
        c.crops.channels = channels;
    }
    crop_groups(&mut c, &args.crops)?;
    Ok(c)
}

struct Shown {
    bar: ProgressBar,
}

impl Observer for Shown {
    fn start(&mut self, run: &RunStart) {
        let c = run.config;
        let crops: Vec<String> = c
            .crops
            .groups
            .iter()
            .map(|g| format!("{}x{}", g.count, g.size))
            .collect();
        self.bar.suspend(|| {
            println!(
                "SwAV ({} preset): {} at width {}, crops {}, {} prototypes, batch {}, on {}",
                c.preset,
                c.arch,
                c.width,
                crops.join(" + "),
                c.prototypes,
                c.batch,
                match run.ranks {
                    1 => run.adapter.clone(),
                    n => format!("{n} replicas (rank 0: {})", run.adapter),
                }
            );
            println!(
                "{} slices, {} steps per epoch; steps {}..{} of {}; lr {} ({} schedule), seed {}, {:?}",
                run.slices,
                run.steps_per_epoch,
                run.first_step + 1,
                run.total_steps,
                run.total_steps,
                c.lr,
                run.schedule,
                c.seed,
                c.precision
            );
        });
        self.bar.set_length(run.total_steps as u64);
        self.bar.set_position(run.first_step as u64);
        self.bar.reset_eta();
    }

    fn step(&mut self, log: &StepLog) {
        self.bar.set_position(log.step as u64);
        let mut extra = match log.loss_scale {
            Some(s) => format!("  loss scale {s}"),
            None => String::new(),
        };
        if let Some(ms) = log.exchange_ms {
            extra.push_str(&format!("  gradient exchange {ms:.0} ms"));
        }
        self.bar.set_message(format!(
            "loss {:.4}  {:.1} img/s  data wait {:.0} ms  entropy {:.2}/{:.2}{extra}",
            log.loss, log.images_per_s, log.data_wait_ms, log.entropy, log.entropy_max
        ));
    }

    fn checkpoint(&mut self, path: &Path, step: usize) {
        self.bar
            .suspend(|| println!("step {step}: checkpoint {}", path.display()));
    }

    fn unreadable(&mut self, error: &IoError) {
        self.bar.suspend(|| eprintln!("skipped: {error}"));
    }
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    #[cfg(feature = "distributed")]
    if lim::dist::launched_ranks().is_some() {
        let mpi = lim::dist::Mpi::init()?;
        let result = train(gpu_args, args, Some(&mpi));
        if let Err(e) = &result {
            // The other ranks wait in a collective for this one: end them all.
            use lim::dist::Collective;
            eprintln!("error: rank {} of {}: {e}", mpi.rank(), mpi.size());
            mpi.abort(1);
        }
        return result;
    }
    #[cfg(not(feature = "distributed"))]
    if let Some(n) = lim::dist::launched_ranks() {
        return Err(format!(
            "started as one of {n} MPI ranks, but this lim was built without MPI: build it \
             with `cargo build --release --features distributed` (needs an MPI library and \
             libclang)"
        )
        .into());
    }
    train(gpu_args, args, None)
}

/// The run of this process: alone, on several devices, or as the MPI rank `mpi`.
fn train(gpu_args: &GpuArgs, args: &Args, mpi: Option<&dyn lim::dist::Collective>) -> CliResult {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps (eta {eta})  {msg}",
        )
        .expect("a valid template"),
    );
    let mut shown = Shown { bar };
    let options = gpu_args.options()?;
    let replicas = match (&args.devices, mpi) {
        (Some(_), Some(_)) => {
            return Err("--devices and mpirun do not mix: one device per MPI rank".into());
        }
        (Some(spec), None) => Replicas::Devices(devices(spec, &options)?),
        (None, Some(comm)) => Replicas::Rank(comm),
        (None, None) => Replicas::One,
    };
    let leads = replicas.leads();
    if !leads {
        shown.bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let (summary, root) = match &args.resume {
        Some(root) => (
            pretrain::resume(&options, root, &mut shown, &replicas)?,
            root.clone(),
        ),
        None => {
            let config = configure(args)?;
            let root = args
                .out
                .clone()
                .expect("clap requires --out without --resume");
            let found = find_slices(&args.slices)?.checked();
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &found.skipped {
                *reasons.entry(s.why.as_str()).or_default() += 1;
            }
            if leads {
                println!(
                    "found {} slices; skipped {}{}",
                    found.files.len(),
                    found.skipped.len(),
                    reasons
                        .iter()
                        .map(|(why, n)| format!("\n  {n} x {why}"))
                        .collect::<String>()
                );
            }
            let summary = pretrain::start(
                &options,
                config,
                &found.files,
                &root,
                args.show_crops,
                &mut shown,
                &replicas,
            )?;
            (summary, root)
        }
    };
    shown.bar.finish_and_clear();
    if !leads {
        return Ok(());
    }
    let loss = match (summary.first_loss, summary.last_loss) {
        (Some(a), Some(b)) => format!("loss {a:.4} -> {b:.4}; "),
        _ => String::new(),
    };
    println!(
        "done: {} steps; {loss}checkpoint {}; log {}; curve {}",
        summary.steps,
        summary.checkpoint.display(),
        root.join("log.jsonl").display(),
        root.join("loss.png").display()
    );
    Ok(())
}
