//! `lim embed`: the globally average-pooled ResNet features (the input of torchvision's
//! `fc`) of images, as a float32 `.npy` array `[n, features]` in input order.

use std::path::PathBuf;

use lim::Gpu;
use lim::eval::encoder::{Encoder, EncoderOptions};
use lim::io::Failure;

use super::hash::list_images;
use super::{CliResult, GpuArgs, counting_bar};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG) or folders, searched recursively in sorted order
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// resnet18, resnet34 or resnet50 (a `lim pretrain` checkpoint names its own; else
    /// resnet18)
    #[arg(long)]
    arch: Option<String>,
    /// A state dict under torchvision's names (its `fc.*` is not used) in safetensors or a
    /// PyTorch checkpoint (`.pt`, `.ckpt`: its `state_dict`, prefixes such as `model.` taken
    /// off), or a `lim pretrain` checkpoint (its backbone is used, with its width, channels and
    /// normalisation); without it the network has torchvision's random initialisation
    /// (seed 0)
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Per-channel means subtracted after scaling pixels to [0, 1], or one for every channel
    /// (the checkpoint's, else ImageNet's)
    #[arg(long, value_delimiter = ',')]
    mean: Vec<f32>,
    /// Per-channel standard deviations divided by, or one for every channel (the
    /// checkpoint's, else ImageNet's)
    #[arg(long, value_delimiter = ',')]
    std: Vec<f32>,
    /// Input channels of the network: 3 (torchvision's; grey images are replicated) or 1
    /// (the checkpoint's, else 3)
    #[arg(long)]
    in_channels: Option<usize>,
    /// Width multiplier of the network (the checkpoint's, else 1: torchvision's)
    #[arg(long)]
    width: Option<f32>,
    /// Images per forward pass
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Where the features go (.npy); the paths of its rows go to the same name + .txt, the
    /// images that could not be read to <name>.failures.jsonl
    #[arg(long)]
    out: PathBuf,
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
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
            seed: 0,
            classes: None,
        },
    )?;
    if encoder.weights.is_none() {
        eprintln!(
            "note: no --weights: features of a randomly initialised {}",
            encoder.arch
        );
    }
    let lim::io::Walk { files, unreadable } = list_images(&args.images)?;
    let bar = counting_bar(files.len() as u64, "images");
    let mut rows: Vec<(PathBuf, Vec<f32>)> = Vec::new();
    for e in &unreadable {
        eprintln!("{e}");
    }
    let mut failures: Vec<Failure> = unreadable.iter().map(Failure::from).collect();
    for chunk in files.chunks(args.batch.max(1)) {
        for (path, features) in chunk.iter().zip(encoder.embed_files(&gpu, chunk)?) {
            match features {
                Ok(f) => rows.push((path.clone(), f)),
                Err(e) => {
                    bar.suspend(|| eprintln!("{e}"));
                    failures.push(e.into());
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if rows.is_empty() {
        return Err("no image could be read".into());
    }
    let values: Vec<f32> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
    lim::io::npy::write_f32(&args.out, rows.len(), encoder.model.feature_len(), &values)?;
    let list = args.out.with_extension("npy.txt");
    let text: String = rows
        .iter()
        .map(|r| format!("{}\n", r.0.display()))
        .collect();
    lim::io::write_atomic(&list, text.as_bytes())?;
    let failed = args.out.with_extension("failures.jsonl");
    lim::io::jsonl::write_all(&failed, &failures)?;
    println!(
        "{} images -> {} [{}, {}] ({} unreadable: {}); rows: {}",
        rows.len(),
        args.out.display(),
        rows.len(),
        encoder.model.feature_len(),
        failures.len(),
        failed.display(),
        list.display()
    );
    Ok(())
}
