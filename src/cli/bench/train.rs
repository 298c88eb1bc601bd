//! `lim bench train-step`: one optimiser step of a ResNet (forward in training mode,
//! cross-entropy, backward, update) on fixed images, in ms and images/s, with what the step
//! asks of the device: dispatches, submissions and host waits.

use std::time::Instant;

use clap::ValueEnum;
use lim::autograd::Var;
use lim::nn::{self, Arch, Random, ResNet, ResNetConfig};
use lim::optim::{Adam, Optimizer, Sgd};
use lim::{Gpu, Tensor};
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
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
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

#[derive(clap::ValueEnum, Clone, Copy)]
enum OptimizerKind {
    /// lr 0.01, momentum 0.9, weight decay 1e-4
    Sgd,
    /// The paper's SwAV settings: lr 0.15, momentum 0.9, weight decay 1e-6, trust 0.001
    Lars,
    /// lr 1e-4
    Adam,
}

pub fn run(gpu_args: &GpuArgs, args: &TrainArgs) -> CliResult {
    let arch: Arch = args.arch.parse()?;
    let gpu = Gpu::new(&gpu_args.options()?)?;
    let config = ResNetConfig {
        num_classes: Some(10),
        ..ResNetConfig::torchvision(arch)
    };
    let model = ResNet::new(config, &mut Random::new(&gpu, 0))?;
    let params = nn::parameters(&model);
    if args.freeze_convolutions {
        for p in params.iter().filter(|p| p.shape().len() == 4) {
            p.set_requires_grad(false)?;
        }
    }
    let mut optimizer: Box<dyn Optimizer> = match args.optimizer {
        OptimizerKind::Sgd => Box::new(
            Sgd::new(params, 0.01)
                .momentum(0.9, false)
                .weight_decay(1e-4),
        ),
        OptimizerKind::Lars => Box::new(
            Sgd::lars(params, 0.15)
                .momentum(0.9, false)
                .weight_decay(1e-6),
        ),
        OptimizerKind::Adam => Box::new(Adam::new(params, 1e-4)),
    };
    let optimizer_name = args
        .optimizer
        .to_possible_value()
        .expect("no variant is skipped");
    let optimizer_name = optimizer_name.get_name();
    let n = args.batch * 3 * args.size * args.size;
    let pixels: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x = Var::constant(Tensor::from_slice(
        &gpu,
        &[args.batch, 3, args.size, args.size],
        &pixels,
    )?);
    let labels: Vec<usize> = (0..args.batch).map(|i| i % 10).collect();
    let mut step = || -> lim::Result<f32> {
        let loss = optimizer
            .train_step(&mut || model.forward(&x, true)?.cross_entropy_classes(&labels))?;
        Ok(loss.value().to_vec()?[0])
    };
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
