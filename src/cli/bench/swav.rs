//! `lim bench swav-step`: a SwAV training step of a preset, in ms and images/s, and where
//! its time goes (augmentation, backbone forward, head, Sinkhorn and loss, backward,
//! optimiser), next to a supervised step of the same backbone on the same crops.

use std::time::Instant;

use lim::Gpu;
use lim::autograd::{Var, autocast};
use lim::dist::Solo;
use lim::nn::{self, Linear, Random};
use lim::optim::{LossScale, Optimizer, Sgd};
use lim::ssl::pretrain::{Precision, PretrainConfig};
use lim::ssl::{Swav, SwavLoss, SwavTrainer, sinkhorn};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::super::{CliResult, GpuArgs};
use super::print_json;

#[derive(clap::Args)]
pub struct SwavArgs {
    /// tiny or paper (ResNet-50 at 2x224 + 6x96 px needs a large device)
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Slices per batch (the preset's by default)
    #[arg(long)]
    batch: Option<usize>,
    /// Timed steps after two untimed ones
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// f32, or f16 (mixed precision: the backbone's convolutions on f16 operands, the loss
    /// scaled), for both the SwAV and the supervised step
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

/// Median of the runs of one phase, in ms.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(gpu_args: &GpuArgs, args: &SwavArgs) -> CliResult {
    let mut config = PretrainConfig::preset(&args.preset)?;
    if let Some(b) = args.batch {
        config.batch = b;
    }
    let gpu = Gpu::new(&gpu_args.options()?)?;
    args.precision.check(&gpu)?;
    let model = Swav::new(config.swav_config()?, &mut Random::new(&gpu, 0))?;
    let mut trainer = SwavTrainer {
        optimizer: Sgd::lars(nn::parameters(&model), 0.1)
            .momentum(0.9, false)
            .weight_decay(config.weight_decay),
        model,
        loss: SwavLoss::default(),
        mixed: (args.precision == Precision::F16).then(LossScale::default),
    };
    let operands = args.precision.operands();
    let b = config.batch;
    let slices = lim::bench::ct_like_slices(b, 512);
    let sizes = vec![(512, 512); b];
    let crops_for = |step: u64| {
        let views = config
            .crops
            .sample(&mut StdRng::seed_from_u64(step), &sizes);
        config.crops.apply(&gpu, &slices, &views)
    };
    // A supervised step of the same backbone on the same crops: a linear classifier over
    // the pooled features, cross-entropy against fixed labels, LARS.
    let classifier = Linear::new(
        &mut Random::new(&gpu, 1),
        "fc",
        trainer.model.backbone.feature_len(),
        10,
    )?;
    let crops_per_slice = config.crops.crops();
    let labels: Vec<usize> = (0..b * crops_per_slice).map(|i| i % 10).collect();
    let mut supervised_params = nn::parameters(&trainer.model.backbone);
    supervised_params.extend(nn::parameters(&classifier));
    let mut supervised = Sgd::lars(supervised_params, 0.1).momentum(0.9, false);

    let (mut phases, mut swav_ms, mut supervised_ms) =
        (vec![Vec::new(); 7], Vec::new(), Vec::new());
    let timed = |f: &mut dyn FnMut() -> lim::Result<()>| -> lim::Result<f64> {
        gpu.sync()?;
        let start = Instant::now();
        f()?;
        gpu.sync()?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let first = Instant::now();
    for step in 0..args.steps + 2 {
        let keep = step >= 2;
        // The whole step as `lim pretrain` records it, synchronised only by the loss.
        let groups = crops_for(step as u64)?;
        let start = Instant::now();
        let out = trainer.step(&groups, b, 0.1, false, None, &Solo)?;
        out.loss.value().to_vec()?;
        let whole = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        let loss = supervised.train_step(&mut || {
            let inputs: Vec<Var> = groups.iter().cloned().map(Var::constant).collect();
            let features: Vec<Var> = autocast(operands, || {
                inputs
                    .iter()
                    .map(|x| trainer.model.backbone.features(x, true))
                    .collect::<lim::Result<_>>()
            })?;
            let features = Var::concat_batch(&features.iter().collect::<Vec<_>>())?;
            classifier
                .forward(&features)?
                .cross_entropy_classes(&labels)
        })?;
        loss.value().to_vec()?;
        let plain = start.elapsed().as_secs_f64() * 1e3;
        // The same SwAV step, phase by phase, each waited for.
        let mut crops = Vec::new();
        let augment = timed(&mut || {
            crops = crops_for(step as u64)?;
            Ok(())
        })?;
        let inputs: Vec<Var> = crops.iter().cloned().map(Var::constant).collect();
        let mut features = Vec::new();
        let forward = timed(&mut || {
            features = autocast(operands, || {
                inputs
                    .iter()
                    .map(|x| trainer.model.backbone.features(x, true))
                    .collect::<lim::Result<_>>()
            })?;
            Ok(())
        })?;
        let mut scores = None;
        let head = timed(&mut || {
            let all = Var::concat_batch(&features.iter().collect::<Vec<_>>())?;
            let h = trainer.model.head.first.forward(&all)?;
            let h = trainer.model.head.bn.forward(&h, true, true)?;
            let z = trainer.model.head.last.forward(&h)?.l2_normalize()?;
            scores = Some(z.linear(&trainer.model.prototypes, None)?);
            Ok(())
        })?;
        let scores = scores.expect("set by the head phase");
        let one_crop = scores.value().slice_batch(0, b)?;
        let sinkhorn_ms = timed(&mut || sinkhorn(&one_crop, 0.05, 3).map(drop))?;
        let mut loss: Option<Var> = None;
        let loss_ms = timed(&mut || {
            loss = Some(trainer.loss.forward(&scores, b, &[None, None], &Solo)?.loss);
            Ok(())
        })?;
        trainer.optimizer.zero_grad();
        let loss = loss.expect("set by the loss phase");
        let backward = timed(&mut || match &trainer.mixed {
            Some(m) => loss.scale(m.scale)?.backward(),
            None => loss.backward(),
        })?;
        let optimizer = timed(&mut || {
            if let Some(m) = &trainer.mixed {
                m.unscale(trainer.optimizer.params())?;
            }
            trainer.optimizer.step()
        })?;
        if keep {
            for (p, v) in phases.iter_mut().zip([
                augment,
                forward,
                head,
                sinkhorn_ms,
                loss_ms,
                backward,
                optimizer,
            ]) {
                p.push(v);
            }
            swav_ms.push(whole);
            supervised_ms.push(plain);
        }
    }
    let warmup_s = first.elapsed().as_secs_f64();
    let names = [
        "augmentation",
        "backbone forward",
        "head forward",
        "sinkhorn (one crop)",
        "loss forward (2 sinkhorns)",
        "backward",
        "optimiser",
    ];
    let split: Vec<(&str, f64)> = names
        .iter()
        .copied()
        .zip(phases.into_iter().map(median))
        .collect();
    let (swav, plain) = (median(swav_ms), median(supervised_ms));
    let augment = split[0].1;
    let images_per_s = b as f64 / (swav + augment) * 1e3;
    if args.json {
        let mut line = json!({
            "what": "swav_step",
            "preset": config.preset,
            "arch": config.arch,
            "width": config.width,
            "batch": b,
            "crops": config.crops.groups.iter().map(|g| format!("{}x{}", g.count, g.size)).collect::<Vec<_>>(),
            "prototypes": config.prototypes,
            "precision": format!("{:?}", args.precision).to_lowercase(),
            "step_ms": swav,
            "augmentation_ms": augment,
            "images_per_s": images_per_s,
            "supervised_step_ms": plain,
            "swav_over_supervised": swav / plain,
            "steps": args.steps,
        });
        let phases: serde_json::Map<String, serde_json::Value> = split
            .iter()
            .map(|(n, v)| (format!("{n} ms"), json!(v)))
            .collect();
        line["phases"] = json!(phases);
        print_json(line, &gpu);
    } else {
        println!(
            "SwAV step, {} preset ({} width {}, batch {}, {} crops per slice, {:?}), on {}",
            config.preset,
            config.arch,
            config.width,
            b,
            crops_per_slice,
            args.precision,
            gpu.describe()
        );
        println!(
            "step {swav:.1} ms + augmentation {augment:.1} ms = {images_per_s:.1} images/s (median of {}, after {warmup_s:.0} s for the whole bench)",
            args.steps
        );
        println!(
            "supervised step of the same backbone on the same crops: {plain:.1} ms; SwAV / supervised = {:.2}",
            swav / plain
        );
        println!("phases, each waited for:");
        for (name, ms) in &split {
            println!("  {name:<28} {ms:>9.1} ms");
        }
    }
    Ok(())
}
