//! `lim bench train-step`: one SGD step of a ResNet (forward in training mode,
//! cross-entropy, backward, SGD with momentum) on random images, in ms and images/s.

use std::time::Instant;

use lim::autograd::Var;
use lim::nn::{self, Arch, Random, ResNet, ResNetConfig};
use lim::optim::{Optimizer, Sgd};
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
    let config = ResNetConfig {
        num_classes: Some(10),
        ..ResNetConfig::torchvision(arch)
    };
    let model = ResNet::new(config, &mut Random::new(&gpu, 0))?;
    let params: Vec<Var> = nn::parameters(&model).into_iter().map(|(_, v)| v).collect();
    let mut sgd = Sgd::new(params, 0.01)
        .momentum(0.9, false)
        .weight_decay(1e-4);
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
        sgd.zero_grad();
        let loss = model.forward(&x, true)?.cross_entropy_classes(&labels)?;
        loss.backward()?;
        sgd.step()?;
        Ok(loss.value().to_vec()?[0])
    };
    let first = Instant::now();
    step()?;
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    step()?;
    let mut times = Vec::new();
    let mut last_loss = 0.0;
    for _ in 0..args.steps.max(1) {
        let start = Instant::now();
        last_loss = step()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let images_per_s = args.batch as f64 / median * 1e3;
    if args.json {
        let line = json!({
            "what": "train_step",
            "arch": args.arch,
            "batch": args.batch,
            "size": args.size,
            "median_ms": median,
            "min_ms": times[0],
            "first_call_ms": first_ms,
            "steps": times.len(),
            "images_per_s": images_per_s,
            "loss": last_loss,
        });
        print_json(line, gpu.info());
    } else {
        println!(
            "{} train step (SGD, momentum 0.9), batch {}, {}x{} px, on {}",
            args.arch,
            args.batch,
            args.size,
            args.size,
            gpu.describe()
        );
        println!(
            "median {median:.1} ms ({images_per_s:.1} images/s) over {} steps; first step {first_ms:.0} ms; loss {last_loss:.4}",
            times.len()
        );
    }
    Ok(())
}
