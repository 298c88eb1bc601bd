//! `lim reduce`: the paper's slice reduction (and the strategies it compared), on a folder of
//! slices or straight from volumes.

use std::path::PathBuf;
use std::sync::Arc;

use lim::eval::encoder::{Encoder, EncoderOptions, SliceEmbedder};
use lim::hash::{Algorithm, HashKind};
use lim::preprocess::{self, Mode};
use lim::select::{self, Hashing, Scope, SharedEmbedder, Strategy, VolumePattern};

use super::{CliResult, GpuArgs, HashDevice, VolumeBar};

#[derive(clap::Args)]
pub struct Args {
    /// INPUT OUTPUT: a folder of PNG slices and where the kept ones go. With --from-volumes:
    /// volumes (files or folders) and, last, the output folder
    #[arg(required = true, num_args = 2..)]
    paths: Vec<PathBuf>,
    /// hash (the paper), every-n, random, ssim, mi or embedding
    #[arg(long, default_value = "hash")]
    method: String,
    /// hash: drop slices within this many bits of the exemplar (default 6, the paper's);
    /// ssim / mi / embedding: drop slices at least this similar (default 0.9 / 0.5 / 0.95,
    /// the features' cosine similarity; the paper's values are not published)
    #[arg(long)]
    threshold: Option<f64>,
    /// The hash: dhash (the paper's), phash or ahash
    #[arg(long, default_value = "dhash")]
    algo: String,
    /// imagehash's hash_size
    #[arg(long, default_value_t = 8)]
    hash_size: usize,
    /// every-n: keep every N-th slice
    #[arg(long, default_value_t = 2)]
    n: usize,
    /// random: the fraction of each volume to keep
    #[arg(long, default_value_t = 0.5)]
    fraction: f64,
    /// random: the seed
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// embedding: the encoder's weights (a `lim pretrain` checkpoint, a torchvision state
    /// dict, a PyTorch checkpoint); without them a randomly initialised network
    #[arg(long)]
    weights: Option<PathBuf>,
    /// embedding: resnet18, resnet34 or resnet50 (a `lim pretrain` checkpoint names its own)
    #[arg(long)]
    arch: Option<String>,
    /// embedding: slices are resized to SIZE x SIZE by area averaging (the checkpoint's
    /// crop size, else 224)
    #[arg(long)]
    size: Option<usize>,
    /// volume (the paper) or global
    #[arg(long, default_value = "volume")]
    scope: String,
    /// Without a manifest.jsonl: auto, lidc, petct, dir, or regex:<expression on the file stem>
    #[arg(long, default_value = "auto")]
    volume_pattern: String,
    /// Hard-link the kept slices instead of copying them
    #[arg(long)]
    link: bool,
    /// Contact sheets (kept vs dropped) for the first N volumes
    #[arg(long, default_value_t = 0, value_name = "N")]
    sheets: usize,
    #[command(flatten)]
    device: HashDevice,
    /// Read NIfTI / DICOM / NRRD volumes, preprocess them in memory, write only kept slices
    #[arg(long)]
    from_volumes: bool,
    /// --from-volumes: preprocessing mode, default or paper
    #[arg(long, default_value = "default", value_parser = ["default", "paper"])]
    mode: String,
    /// --from-volumes: the window (see `lim preprocess --help`)
    #[arg(long, default_value = "minmax")]
    window: String,
    /// Reduce only part I of N of the volumes (a stable split by volume name), into an
    /// output of its own; `--merge` joins the parts
    #[arg(long, value_name = "I/N")]
    shard: Option<select::Shard>,
    /// The paths are the output folders of every part of a `--shard` run and, last, the
    /// output: written as one run on the whole input would have (with --scope global, the
    /// hash rule applied again across the parts)
    #[arg(long, conflicts_with_all = ["shard", "from_volumes"])]
    merge: bool,
}

fn strategy(gpu_args: &GpuArgs, args: &Args) -> Result<Strategy, Box<dyn std::error::Error>> {
    Ok(match args.method.as_str() {
        "hash" => {
            let kind = HashKind::new(args.algo.parse::<Algorithm>()?, args.hash_size)?;
            let threshold = args.threshold.unwrap_or(6.0);
            if threshold < 0.0 || threshold.fract() != 0.0 {
                return Err(format!("--threshold {threshold}: a number of bits, 0 or more").into());
            }
            Strategy::Hash {
                kind,
                threshold: threshold as u32,
            }
        }
        "every-n" if args.n >= 1 => Strategy::EveryN(args.n),
        "every-n" => return Err("--n must be at least 1".into()),
        "random" => Strategy::Random {
            fraction: args.fraction,
            seed: args.seed,
        },
        "ssim" => Strategy::Ssim {
            threshold: args.threshold.unwrap_or(0.9),
        },
        "mi" => Strategy::Mi {
            threshold: args.threshold.unwrap_or(0.5),
        },
        "embedding" => {
            let gpu = lim::Gpu::new(&gpu_args.options()?)?;
            let options = EncoderOptions {
                arch: args.arch.clone(),
                weights: args.weights.clone(),
                ..Default::default()
            };
            let encoder = Encoder::load(&gpu, &options)?;
            if encoder.weights.is_none() {
                eprintln!(
                    "note: no --weights: features of a randomly initialised {}",
                    encoder.arch
                );
            }
            let size = args.size.or(encoder.trained_size).unwrap_or(224);
            Strategy::Embedding {
                threshold: args.threshold.unwrap_or(0.95),
                embedder: SharedEmbedder(Arc::new(SliceEmbedder {
                    gpu,
                    encoder,
                    size,
                    batch: 32,
                })),
            }
        }
        other => {
            return Err(format!(
                "`{other}` is not a method: use hash, every-n, random, ssim, mi or embedding"
            )
            .into());
        }
    })
}

fn print_summary(summary: &[(String, usize, usize)]) {
    let width = summary.iter().map(|s| s.0.len()).max().unwrap_or(6).max(6);
    println!(
        "{:<width$}  {:>7}  {:>6}  {:>6}",
        "volume", "slices", "kept", "kept %"
    );
    for (volume, total, kept) in summary {
        println!(
            "{volume:<width$}  {total:>7}  {kept:>6}  {:>5.1}%",
            100.0 * *kept as f64 / (*total).max(1) as f64
        );
    }
    let (total, kept) = summary.iter().fold((0, 0), |(t, k), s| (t + s.1, k + s.2));
    println!(
        "{:<width$}  {total:>7}  {kept:>6}  {:>5.1}%",
        "all",
        100.0 * kept as f64 / total.max(1) as f64
    );
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let strategy = strategy(gpu_args, args)?;
    let kind = match &strategy {
        Strategy::Hash { kind, .. } => *kind,
        _ => HashKind::DHASH,
    };
    let hashing = match strategy {
        Strategy::Hash { .. } => args.device.hashing(gpu_args, kind)?,
        _ => Hashing::Cpu(kind),
    };
    let scope: Scope = args.scope.parse()?;
    let (inputs, output) = args.paths.split_at(args.paths.len() - 1);
    let output = &output[0];
    let bar = VolumeBar::new();

    let summary = if args.merge {
        let report = select::merge(inputs, output, scope, args.link)?;
        for f in &report.failures {
            eprintln!("{}", f.error);
        }
        report.summary()
    } else if args.from_volumes {
        if args.shard.is_some() {
            return Err("--shard splits a slice folder: not with --from-volumes".into());
        }
        if scope == Scope::Global {
            return Err(
                "--from-volumes reduces volume by volume: --scope global needs the slices on disk"
                    .into(),
            );
        }
        let opts = preprocess::Options {
            mode: if args.mode == "paper" {
                Mode::Paper
            } else {
                Mode::Default
            },
            window: args.window.parse()?,
            ..preprocess::Options::new(output)
        };
        let (made, reduced) = select::run_from_volumes(inputs, &opts, &strategy, &hashing, &bar)?;
        bar.0.finish_and_clear();
        for f in &made.failures {
            eprintln!("{}", f.error);
        }
        if made.volumes == 0 {
            return Err("no volume could be read".into());
        }
        reduced.summary()
    } else {
        if inputs.len() != 1 {
            return Err("give one INPUT folder and the OUTPUT folder (or --from-volumes)".into());
        }
        let opts = select::Options {
            strategy: strategy.clone(),
            scope,
            pattern: args.volume_pattern.parse::<VolumePattern>()?,
            link: args.link,
            sheets: args.sheets,
            shard: args.shard,
        };
        let report = select::run(&inputs[0], output, &opts, &hashing, &bar)?;
        bar.0.finish_and_clear();
        for f in &report.failures {
            eprintln!("{}", f.error);
        }
        if report.records.is_empty() {
            return Err(format!("no PNG slice could be read under {}", inputs[0].display()).into());
        }
        report.summary()
    };
    print_summary(&summary);
    println!("decisions: {}", output.join("reduction.jsonl").display());
    Ok(())
}

type Failed = Box<dyn std::error::Error>;
type Counted = Result<usize, Failed>;

/// For `lim experiment`: a function from a threshold to the slices the reduction `args`
/// describes (ssim, mi or embedding, from a folder) keeps at it, its output hard-linked into
/// `args`' output folder. The strategy, and its network, are set up once.
pub fn counter(gpu_args: &GpuArgs, args: &Args) -> Result<impl FnMut(f64) -> Counted, Failed> {
    let strategy = strategy(gpu_args, args)?;
    let (input, output) = (args.paths[0].clone(), args.paths[1].clone());
    let pattern = args.volume_pattern.parse::<VolumePattern>()?;
    Ok(move |threshold: f64| {
        let strategy = match strategy.clone() {
            Strategy::Ssim { .. } => Strategy::Ssim { threshold },
            Strategy::Mi { .. } => Strategy::Mi { threshold },
            Strategy::Embedding { embedder, .. } => Strategy::Embedding {
                threshold,
                embedder,
            },
            other => return Err(format!("{other:?} has no similarity threshold").into()),
        };
        let _ = std::fs::remove_dir_all(&output);
        let opts = select::Options {
            strategy,
            scope: Scope::Volume,
            pattern: pattern.clone(),
            link: true,
            sheets: 0,
            shard: None,
        };
        let report = select::run(
            &input,
            &output,
            &opts,
            &Hashing::Cpu(HashKind::DHASH),
            &lim::preprocess::NoProgress,
        )?;
        Ok(report.records.iter().filter(|r| r.kept).count())
    })
}
