//! `lim evaluate`: how well an encoder serves a labelled downstream task (the paper's stage
//! 4), with metrics as scikit-learn computes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use lim::Gpu;
use lim::eval::dataset::{Dataset, SPLITS, Transform};
use lim::eval::encoder::{Encoder, EncoderOptions};
use lim::eval::finetune::{self, FinetuneOptions};
use lim::eval::metrics::Metrics;
use lim::eval::probe::{self, EpochLog, Features, Probe, ProbeOptions};
use lim::eval::report::{RepeatResult, Report, SplitResult};
use lim::io::Failure;
use serde_json::json;

use super::{CliResult, GpuArgs, counting_bar};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    /// The encoder frozen, a linear classifier trained on its pooled features
    Linear,
    /// Everything trains, at the given learning rate
    Finetune,
    /// The paper's notebooks: ResNet-50 at 224 px, Adam 1e-4 with weight decay 5e-4, batch
    /// 64, 70 epochs, convolutions frozen for 10, then 2e-5 from epoch 12
    Paper,
}

/// A protocol's settings where the user gave none.
struct Defaults {
    epochs: usize,
    batch: usize,
    lr: f64,
    weight_decay: f64,
    freeze_epochs: usize,
    later_lr: Option<f64>,
}

impl Protocol {
    fn defaults(self) -> Defaults {
        match self {
            Protocol::Linear => Defaults {
                epochs: 100,
                batch: 256,
                lr: 1e-3,
                weight_decay: 0.0,
                freeze_epochs: 0,
                later_lr: None,
            },
            Protocol::Finetune => Defaults {
                epochs: 30,
                batch: 64,
                lr: 1e-4,
                weight_decay: 0.0,
                freeze_epochs: 0,
                later_lr: None,
            },
            Protocol::Paper => Defaults {
                epochs: 70,
                batch: 64,
                lr: 1e-4,
                weight_decay: 5e-4,
                freeze_epochs: 10,
                later_lr: Some(2e-5),
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Linear => "linear",
            Protocol::Finetune => "finetune",
            Protocol::Paper => "paper",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// A MedMNIST .npz, a labels CSV (path,label[,split]) or a folder
    /// {train,test}/{class}/* (with an optional val/)
    data: PathBuf,
    #[arg(long, value_enum, default_value = "linear")]
    protocol: Protocol,
    /// The encoder's weights: a `lim pretrain` checkpoint, a torchvision state dict
    /// (safetensors), or a PyTorch checkpoint (`.pt`, `.pth`, a Lightning `.ckpt`: its
    /// `state_dict`, `model.` and similar prefixes taken off, as the paper's notebooks do)
    #[arg(long, required_unless_present = "init", conflicts_with = "init")]
    weights: Option<PathBuf>,
    /// `random`: torchvision's random initialisation (seeded by --seed), the scratch
    /// baseline
    #[arg(long, value_parser = ["random"])]
    init: Option<String>,
    /// resnet18, resnet34 or resnet50 (a `lim pretrain` checkpoint names its own; else
    /// resnet50 for the paper protocol, resnet18 otherwise)
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
    /// Images are resized to SIZE x SIZE by area averaging (224 for the paper protocol; else
    /// the checkpoint's large crop size, else 224)
    #[arg(long)]
    size: Option<usize>,
    /// Training epochs (linear 100, finetune 30, paper 70)
    #[arg(long)]
    epochs: Option<usize>,
    /// Training batch (linear 256, finetune and paper 64)
    #[arg(long)]
    batch: Option<usize>,
    /// Adam's learning rate (linear 1e-3, finetune and paper 1e-4)
    #[arg(long)]
    lr: Option<f64>,
    /// Adam's (L2) weight decay (paper 5e-4, else 0)
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Epochs with the convolutions frozen and BatchNorm training (paper 10, finetune 0)
    #[arg(long)]
    freeze_epochs: Option<usize>,
    /// The learning rate from the second epoch with everything open (paper 2e-5)
    #[arg(long)]
    later_lr: Option<f64>,
    /// Trainings of the classifier, with seeds SEED, SEED + 1, ...; metrics are reported
    /// per repeat and as mean ± std
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use N samples of every split, drawn at random in each class's share (seeded by
    /// --seed)
    #[arg(long)]
    limit: Option<usize>,
    /// Images per forward pass where nothing trains (embedding, validation, test)
    #[arg(long, default_value_t = 32)]
    embed_batch: usize,
    /// The output folder: report.md, report.json, predictions.csv, roc.png, train.jsonl
    /// (and best-<repeat>.safetensors, the tested weights, for finetune and paper)
    #[arg(long)]
    out: PathBuf,
}

/// One protocol's training of one repeat: the best epoch, its validation accuracy, and
/// each tested split's predictions.
struct Trained {
    best_epoch: usize,
    best_val_accuracy: f64,
    splits: BTreeMap<String, SplitResult>,
}

/// A split's predictions with their metrics (the bootstrap seeded by `seed`).
fn tested(
    ids: Vec<String>,
    labels: Vec<usize>,
    probabilities: Vec<f64>,
    k: usize,
    seed: u64,
) -> SplitResult {
    let metrics = Metrics::compute(&labels, &probabilities, k, seed);
    SplitResult {
        ids,
        labels,
        probabilities,
        metrics,
    }
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let defaults = args.protocol.defaults();
    let mut data = Dataset::open(&args.data, args.seed)?;
    if let Some(n) = args.limit {
        data.limit(n, args.seed)?;
    }
    let k = data.classes.len();
    let gpu = Gpu::new(&gpu_args.options()?)?;
    let trains = args.protocol != Protocol::Linear;
    let encoder_options = |seed: u64| EncoderOptions {
        arch: args.arch.clone().or_else(|| {
            (args.protocol == Protocol::Paper && args.weights.is_none()).then(|| "resnet50".into())
        }),
        weights: args.weights.clone(),
        in_channels: args.in_channels,
        width: args.width,
        mean: args.mean.clone(),
        std: args.std.clone(),
        seed,
        classes: trains.then_some(k),
    };
    let encoder = Encoder::load(&gpu, &encoder_options(args.seed))?;
    let paper_size = (args.protocol == Protocol::Paper).then_some(224);
    let transform = Transform {
        channels: encoder.channels,
        size: args
            .size
            .or(paper_size)
            .or(encoder.trained_size)
            .unwrap_or(224),
        mean: encoder.mean.clone(),
        std: encoder.std.clone(),
    };
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!(
        "{}: {} classes, train {} / val {} / test {}; {} at {}x{}, weights {}, {} protocol",
        data.source.display(),
        k,
        data.splits[0].len(),
        data.splits[1].len(),
        data.splits[2].len(),
        encoder.arch,
        transform.size,
        transform.size,
        weights_name(&encoder),
        args.protocol.name(),
    );
    let epochs = args.epochs.unwrap_or(defaults.epochs);
    let batch = args.batch.unwrap_or(defaults.batch);
    let lr = args.lr.unwrap_or(defaults.lr);
    let weight_decay = args.weight_decay.unwrap_or(defaults.weight_decay);
    let freeze_epochs = args.freeze_epochs.unwrap_or(defaults.freeze_epochs);
    let later_lr = args.later_lr.or(defaults.later_lr);
    let mut settings = json!({
        "epochs": epochs, "batch": batch, "lr": lr, "weight_decay": weight_decay,
        "optimizer": "Adam", "size": transform.size, "channels": transform.channels,
        "mean": transform.mean, "std": transform.std, "seed": args.seed, "limit": args.limit,
    });
    let log_path = args.out.join("train.jsonl");
    let mut log = lim::io::jsonl::Log::create(&log_path)?;
    // The first failure to write the log, reported once training is done.
    let mut log_error = None;
    let mut unreadable = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    let features = match trains {
        false => {
            let features = embed_all(&gpu, &encoder, &data, &transform, args.embed_batch)?;
            for (name, f) in SPLITS.iter().zip(&features) {
                unreadable.extend(f.failed.iter().map(Failure::from));
                samples.insert(name.to_string(), f.len());
            }
            settings["features"] =
                "frozen encoder, evaluation mode; standardised with the training split's statistics".into();
            Some(features)
        }
        true => {
            settings["freeze_epochs"] = freeze_epochs.into();
            settings["later_lr"] = later_lr.into();
            settings["training"] = "the whole network in training mode; the classifier new (torchvision's initialisation)".into();
            None
        }
    };
    let (arch, weights) = (encoder.arch.clone(), weights_name(&encoder));
    drop(encoder);
    let bar = counting_bar((epochs * args.repeats) as u64, "epochs");
    bar.enable_steady_tick(Duration::from_millis(250));
    let mut repeats = Vec::new();
    for repeat in 0..args.repeats {
        let seed = args.seed + repeat as u64;
        let mut on_epoch = |e: &EpochLog| {
            let line = json!({"repeat": repeat, "epoch": e.epoch, "loss": e.loss, "val_accuracy": e.val_accuracy});
            if let Err(e) = log.write(&line) {
                log_error.get_or_insert(e);
            }
            bar.set_message(format!(
                "repeat {repeat}: loss {:.4}, val accuracy {:.4}",
                e.loss, e.val_accuracy
            ));
            bar.inc(1);
        };
        let trained = match &features {
            Some(features) => {
                let options = ProbeOptions {
                    epochs,
                    batch,
                    lr: lr as f32,
                    weight_decay: weight_decay as f32,
                    seed,
                };
                train_probe(&gpu, features, k, &options, &mut on_epoch)?
            }
            None => {
                let model = Encoder::load(&gpu, &encoder_options(seed))?.model;
                let options = FinetuneOptions {
                    epochs,
                    batch,
                    lr: lr as f32,
                    weight_decay: weight_decay as f32,
                    seed,
                    freeze_epochs,
                    later_lr: later_lr.map(|v| v as f32),
                };
                let best = args.out.join(format!("best-{repeat}.safetensors"));
                let done = finetune::train(
                    &gpu,
                    &model,
                    &data.splits[0],
                    &data.splits[1],
                    &transform,
                    &options,
                    &best,
                    &mut on_epoch,
                )?;
                if done.best_val_accuracy < 0.0 {
                    return Err("no epoch was validated: give --epochs 1 or more".into());
                }
                let model = finetune::reload(&gpu, &model, &best)?;
                let mut splits = BTreeMap::new();
                for (name, split) in SPLITS.iter().zip(&data.splits).skip(1) {
                    let (p, kept, failed) =
                        finetune::predict(&gpu, &model, split, &transform, args.embed_batch)?;
                    if repeat == 0 {
                        unreadable.extend(failed.iter().map(Failure::from));
                        samples.insert(name.to_string(), kept.len());
                    }
                    let ids = kept.iter().map(|&i| split[i].id.clone()).collect();
                    let labels = kept.iter().map(|&i| split[i].label).collect();
                    splits.insert(name.to_string(), tested(ids, labels, p, k, seed));
                }
                if repeat == 0 {
                    samples.insert("train".into(), data.splits[0].len() - done.unreadable.len());
                    unreadable.extend(done.unreadable);
                }
                Trained {
                    best_epoch: done.best_epoch,
                    best_val_accuracy: done.best_val_accuracy,
                    splits,
                }
            }
        };
        repeats.push(RepeatResult {
            repeat,
            seed,
            best_epoch: trained.best_epoch,
            best_val_accuracy: trained.best_val_accuracy,
            splits: trained.splits,
        });
    }
    bar.finish_and_clear();
    if let Some(e) = log_error {
        return Err(e.into());
    }
    for u in &unreadable {
        eprintln!("{}", u.error);
    }
    let mut report = Report {
        protocol: args.protocol.name().into(),
        data: data.source.display().to_string(),
        weights,
        arch,
        adapter: gpu.describe(),
        classes: data.classes.clone(),
        samples,
        unreadable: unreadable.into_iter().collect(),
        settings,
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

/// The frozen encoder's features of every split, with a progress bar.
fn embed_all(
    gpu: &Arc<Gpu>,
    encoder: &Encoder,
    data: &Dataset,
    t: &Transform,
    batch: usize,
) -> Result<Vec<Features>, Box<dyn std::error::Error>> {
    let total: usize = data.splits.iter().map(Vec::len).sum();
    let bar: ProgressBar = counting_bar(total as u64, "images embedded");
    let mut features = Vec::new();
    for (name, samples) in SPLITS.iter().zip(&data.splits) {
        bar.set_message(name.to_string());
        let f = probe::embed(gpu, encoder, samples, t, batch, &mut |n| bar.inc(n as u64))?;
        if f.is_empty() {
            return Err(format!("no image of the {name} split could be read").into());
        }
        features.push(f);
    }
    bar.finish_and_clear();
    Ok(features)
}

fn train_probe(
    gpu: &Arc<Gpu>,
    features: &[Features],
    k: usize,
    options: &ProbeOptions,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> lim::Result<Trained> {
    let probe = Probe::train(gpu, &features[0], &features[1], k, options, on_epoch)?;
    let mut splits = BTreeMap::new();
    for (name, f) in SPLITS.iter().zip(features).skip(1) {
        let p = probe.probabilities(&f.values)?;
        let result = tested(f.ids.clone(), f.labels.clone(), p, k, options.seed);
        splits.insert(name.to_string(), result);
    }
    Ok(Trained {
        best_epoch: probe.best_epoch,
        best_val_accuracy: probe.best_val_accuracy,
        splits,
    })
}

fn weights_name(encoder: &Encoder) -> String {
    encoder
        .weights
        .as_ref()
        .map_or("random".into(), |w| w.display().to_string())
}
