//! `lim evaluate`: how well an encoder's features serve a labelled downstream task (the
//! paper's stage 4), with metrics as scikit-learn computes them.

use std::io::Write;
use std::path::PathBuf;

use lim::Gpu;
use lim::eval::dataset::{Dataset, SPLITS, Transform};
use lim::eval::encoder::{Encoder, EncoderOptions};
use lim::eval::metrics::Metrics;
use lim::eval::probe::{self, Probe, ProbeOptions};
use lim::eval::report::{RepeatResult, Report, SplitResult};
use serde_json::json;

use super::{CliResult, GpuArgs, counting_bar};

#[derive(clap::Args)]
pub struct Args {
    /// A MedMNIST .npz, a labels CSV (path,label[,split]) or a folder
    /// {train,test}/{class}/* (with an optional val/)
    data: PathBuf,
    /// linear: the encoder frozen, a linear classifier trained on its pooled features
    #[arg(long, default_value = "linear", value_parser = ["linear"])]
    protocol: String,
    /// The encoder's weights: a `lim pretrain` checkpoint, a torchvision state dict
    /// (safetensors), or a PyTorch checkpoint (`.pt`, `.pth`, a Lightning `.ckpt`: its
    /// `state_dict`, `model.` and similar prefixes taken off, as the paper's notebooks do)
    #[arg(long, required_unless_present = "init", conflicts_with = "init")]
    weights: Option<PathBuf>,
    /// `random`: torchvision's random initialisation (seeded by --seed), the scratch
    /// baseline
    #[arg(long, value_parser = ["random"])]
    init: Option<String>,
    /// resnet18, resnet34 or resnet50 (a `lim pretrain` checkpoint names its own)
    #[arg(long)]
    arch: Option<String>,
    /// Input channels: 3 (grey images replicated) or 1 (the checkpoint's, else 3)
    #[arg(long)]
    in_channels: Option<usize>,
    /// Width multiplier (the checkpoint's, else 1)
    #[arg(long)]
    width: Option<f32>,
    /// Normalize's mean after scaling to [0, 1]: one value for every channel, or one per
    /// channel (the checkpoint's, else ImageNet's)
    #[arg(long, value_delimiter = ',')]
    mean: Vec<f32>,
    /// Normalize's standard deviation, as --mean
    #[arg(long, value_delimiter = ',')]
    std: Vec<f32>,
    /// Images are resized to SIZE x SIZE by area averaging (the checkpoint's large crop
    /// size, else 224)
    #[arg(long)]
    size: Option<usize>,
    /// Epochs of the classifier
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Training batch of the classifier
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Trainings of the classifier, with seeds SEED, SEED + 1, ...; metrics are reported
    /// per repeat and as mean ± std
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use N samples of every split, drawn at random (seeded by --seed)
    #[arg(long)]
    limit: Option<usize>,
    /// Images per forward pass of the encoder
    #[arg(long, default_value_t = 32)]
    embed_batch: usize,
    /// The output folder: report.md, report.json, predictions.csv, roc.png, train.jsonl
    #[arg(long)]
    out: PathBuf,
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let mut data = Dataset::open(&args.data, args.seed)?;
    if let Some(n) = args.limit {
        data.limit(n, args.seed)?;
    }
    let gpu = Gpu::new(&gpu_args.options()?)?;
    let encoder = Encoder::load(
        &gpu,
        &EncoderOptions {
            arch: args.arch.clone(),
            weights: args.weights.clone(),
            in_channels: args.in_channels,
            width: args.width,
            mean: args.mean.clone(),
            std: args.std.clone(),
            seed: args.seed,
        },
    )?;
    let transform = Transform {
        channels: encoder.channels,
        size: args.size.or(encoder.trained_size).unwrap_or(224),
        mean: encoder.mean.clone(),
        std: encoder.std.clone(),
    };
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let total: usize = data.splits.iter().map(Vec::len).sum();
    eprintln!(
        "{}: {} classes, train {} / val {} / test {}; {} at {}x{}, weights {}",
        data.source.display(),
        data.classes.len(),
        data.splits[0].len(),
        data.splits[1].len(),
        data.splits[2].len(),
        encoder.arch,
        transform.size,
        transform.size,
        weights_name(&encoder),
    );
    let bar = counting_bar(total as u64, "images embedded");
    let mut features = Vec::new();
    for (name, samples) in SPLITS.iter().zip(&data.splits) {
        bar.set_message(name.to_string());
        let f = probe::embed(
            &gpu,
            &encoder,
            samples,
            &transform,
            args.embed_batch,
            &mut |n| bar.inc(n as u64),
        )?;
        for e in &f.failed {
            bar.suspend(|| eprintln!("{e}"));
        }
        if f.is_empty() {
            return Err(format!("no image of the {name} split could be read").into());
        }
        features.push(f);
    }
    bar.finish_and_clear();
    let log_path = args.out.join("train.jsonl");
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?,
    );
    let bar = counting_bar((args.epochs * args.repeats) as u64, "epochs");
    let k = data.classes.len();
    let mut repeats = Vec::new();
    for repeat in 0..args.repeats {
        let seed = args.seed + repeat as u64;
        let options = ProbeOptions {
            epochs: args.epochs,
            batch: args.batch,
            lr: args.lr as f32,
            weight_decay: args.weight_decay as f32,
            seed,
        };
        let mut on_epoch = |e: &probe::EpochLog| {
            let line = json!({"repeat": repeat, "epoch": e.epoch, "loss": e.loss, "val_accuracy": e.val_accuracy});
            writeln!(log, "{line}").expect("train.jsonl is writable");
            bar.set_message(format!(
                "repeat {repeat}: loss {:.4}, val accuracy {:.4}",
                e.loss, e.val_accuracy
            ));
            bar.inc(1);
        };
        let probe = Probe::train(&gpu, &features[0], &features[1], k, &options, &mut on_epoch)?;
        let mut splits = std::collections::BTreeMap::new();
        for (name, f) in SPLITS.iter().zip(&features).skip(1) {
            let probabilities = probe.probabilities(&f.values)?;
            let metrics = Metrics::compute(&f.labels, &probabilities, k, seed);
            splits.insert(
                name.to_string(),
                SplitResult {
                    ids: f.ids.clone(),
                    labels: f.labels.clone(),
                    probabilities,
                    metrics,
                },
            );
        }
        repeats.push(RepeatResult {
            repeat,
            seed,
            best_epoch: probe.best_epoch,
            best_val_accuracy: probe.best_val_accuracy,
            splits,
        });
    }
    bar.finish_and_clear();
    log.flush()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut report = Report {
        protocol: args.protocol.clone(),
        data: data.source.display().to_string(),
        weights: weights_name(&encoder),
        arch: encoder.arch.clone(),
        adapter: gpu.describe(),
        classes: data.classes.clone(),
        samples: SPLITS
            .iter()
            .zip(&features)
            .map(|(n, f)| (n.to_string(), f.len()))
            .collect(),
        unreadable: features
            .iter()
            .flat_map(|f| f.failed.iter().map(|e| e.to_string()))
            .collect(),
        settings: json!({
            "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "weight_decay": args.weight_decay,
            "optimizer": "Adam", "size": transform.size, "channels": transform.channels,
            "mean": transform.mean, "std": transform.std, "seed": args.seed, "limit": args.limit,
            "features": "frozen encoder, evaluation mode; standardised with the training split's statistics",
        }),
        repeats,
        summary: Default::default(),
    };
    report.summarise();
    report.write(&args.out)?;
    for (split, metrics) in SPLITS
        .iter()
        .filter_map(|s| report.summary.get(*s).map(|m| (s, m)))
    {
        let line: Vec<String> = metrics
            .iter()
            .map(|(m, s)| format!("{m} {:.4} ± {:.4}", s.mean, s.std))
            .collect();
        println!("{split}: {}", line.join(", "));
    }
    println!("report: {}", args.out.join("report.md").display());
    Ok(())
}

fn weights_name(encoder: &Encoder) -> String {
    encoder
        .weights
        .as_ref()
        .map_or("random".into(), |w| w.display().to_string())
}
