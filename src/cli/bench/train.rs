//! `lim bench train-step`: one optimiser step of a ResNet (forward in training mode,
//! cross-entropy, backward, update) on fixed images, in ms and images/s, with what the step
//! asks of the device: dispatches, submissions and host waits.

use std::time::Instant;

use lim::Gpu;
use lim::bench::{OptimizerKind, TrainStep};
use lim::nn::Arch;
use serde_json::json;

use super::super::{CliResult, GpuArgs};
use super::print_json;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// resnet18, resnet34 or resnet50
    #[arg(long, default_value = "resnet18")]
    arch: String,
    /// Image side in pixels
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// sgd (lr 0.01, momentum 0.9, weight decay 1e-4), lars (the paper's SwAV settings: lr
    /// 0.15, momentum 0.9, weight decay 1e-6, trust 0.001) or adam (lr 1e-4)
    #[arg(long, default_value = "sgd")]
    optimizer: OptimizerKind,
    /// Freeze the convolutions' weights (BatchNorm and the classifier train), as the paper's
    /// fine-tuning does for its first epochs: their gradients are not computed
    #[arg(long)]
    freeze_convolutions: bool,
    /// Timed steps after two untimed ones (which include autotuning on first use)
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Print one JSON object per line instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(gpu_args: &GpuArgs, args: &TrainArgs) -> CliResult {
    let arch: Arch = args.arch.parse()?;
    let gpu = Gpu::new(&gpu_args.options()?)?;
    let optimizer = args.optimizer;
    let optimizer_name = optimizer.name();
    let mut train = TrainStep::new(
        &gpu,
        arch,
        args.batch,
        args.size,
        optimizer,
        args.freeze_convolutions,
    )?;
    let mut step = || train.step();
    let first = Instant::now();
    step()?;
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    step()?;
    let mut times = Vec::new();
    let mut last_loss = 0.0;
    let before = gpu.counters();
    for _ in 0..args.steps.max(1) {
        let start = Instant::now();
        last_loss = step()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let per_step = |n: u64| n as f64 / times.len() as f64;
    let counts = gpu.counters() - before;
    let (dispatches, submissions, waits) = (
        per_step(counts.dispatches),
        per_step(counts.submissions),
        per_step(counts.waits),
    );
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let images_per_s = args.batch as f64 / median * 1e3;
    if args.json {
        let line = json!({
            "what": "train_step",
            "arch": args.arch,
            "optimizer": optimizer_name,
            "frozen_convolutions": args.freeze_convolutions,
            "batch": args.batch,
            "size": args.size,
            "median_ms": median,
            "min_ms": times[0],
            "first_call_ms": first_ms,
            "steps": times.len(),
            "images_per_s": images_per_s,
            "loss": last_loss,
            "dispatches_per_step": dispatches,
            "submissions_per_step": submissions,
            "waits_per_step": waits,
        });
        print_json(line, &gpu);
    } else {
        println!(
            "{} train step ({}{}), batch {}, {}x{} px, on {}",
            args.arch,
            optimizer_name,
            if args.freeze_convolutions {
                ", convolutions frozen"
            } else {
                ""
            },
            args.batch,
            args.size,
            args.size,
            gpu.describe()
        );
        println!(
            "median {median:.1} ms ({images_per_s:.1} images/s) over {} steps; first step {first_ms:.0} ms; loss {last_loss:.4}",
            times.len()
        );
        println!(
            "per step: {dispatches:.0} dispatches in {submissions:.0} submissions, {waits:.0} host waits (the loss readback)"
        );
    }
    Ok(())
}
