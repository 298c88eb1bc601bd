//! `lim embed`: the globally average-pooled ResNet features (the input of torchvision's
//! `fc`) of images, as a float32 `.npy` array `[n, features]` in input order.

use std::io::Write;
use std::path::{Path, PathBuf};

use lim::autograd::{Var, no_grad};
use lim::nn::{Arch, Random, ResNet, ResNetConfig, StateDict};
use lim::{Gpu, Tensor};
use rayon::prelude::*;

use super::hash::list_images;
use super::{CliResult, GpuArgs, counting_bar};

#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG) or folders, searched recursively in sorted order
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// resnet18, resnet34 or resnet50
    #[arg(long, default_value = "resnet18")]
    arch: String,
    /// A safetensors state dict under torchvision's names (its `fc.*` is not used); without
    /// it the network has torchvision's random initialisation (seed 0)
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Per-channel means subtracted after scaling pixels to [0, 1] (ImageNet's by default)
    #[arg(long, value_delimiter = ',', default_value = "0.485,0.456,0.406")]
    mean: Vec<f32>,
    /// Per-channel standard deviations divided by (ImageNet's by default)
    #[arg(long, value_delimiter = ',', default_value = "0.229,0.224,0.225")]
    std: Vec<f32>,
    /// Input channels of the network: 3 (torchvision's; grey images are replicated) or 1
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    /// Images per forward pass
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Where the features go (.npy); the paths of its rows go to the same name + .txt
    #[arg(long)]
    out: PathBuf,
}

/// One image as planes of `channels`, scaled to [0, 1] and normalised.
fn pixels(
    path: &Path,
    channels: usize,
    mean: &[f32],
    std: &[f32],
) -> Result<(usize, usize, Vec<f32>), String> {
    let image = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("{}: cannot read the image: {e}", path.display()))?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    let grey = !image.color().has_color();
    let rgb = image.to_rgb32f();
    let mut planes = vec![0.0; channels * w * h];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..channels {
            // Grey images have equal channels; a 1-channel network takes the luma.
            let v = match (channels, grey) {
                (1, false) => 0.299 * p.0[0] + 0.587 * p.0[1] + 0.114 * p.0[2],
                (1, true) => p.0[0],
                _ => p.0[c],
            };
            planes[c * w * h + i] = (v - mean[c]) / std[c];
        }
    }
    Ok((w, h, planes))
}

/// A float32 `.npy` file (format 1.0, C order).
fn write_npy(path: &Path, rows: usize, cols: usize, values: &[f32]) -> std::io::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(b"\x93NUMPY\x01\x00")?;
    file.write_all(&(header.len() as u16).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    file.write_all(bytemuck::cast_slice(values))?;
    file.flush()
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let arch: Arch = args.arch.parse()?;
    let channels = args.in_channels;
    if ![1, 3].contains(&channels) || args.mean.len() < channels || args.std.len() < channels {
        return Err(format!(
            "--in-channels is 1 or 3, with as many --mean and --std values (got {channels}, {:?}, {:?})",
            args.mean, args.std
        )
        .into());
    }
    let gpu = Gpu::new(&gpu_args.options()?)?;
    let config = ResNetConfig {
        arch,
        in_channels: channels,
        width: 1.0,
        num_classes: None,
    };
    let model = match &args.weights {
        Some(path) => {
            let mut state = StateDict::load(&gpu, path)?;
            state.skip("fc.");
            let model = ResNet::new(config, &mut state)?;
            state.finish()?;
            model
        }
        None => {
            eprintln!(
                "note: no --weights: features of a randomly initialised {}",
                args.arch
            );
            ResNet::new(config, &mut Random::new(&gpu, 0))?
        }
    };
    let files = list_images(&args.images)?;
    let bar = counting_bar(files.len() as u64, "images");
    let mut rows: Vec<(PathBuf, Vec<f32>)> = Vec::new();
    let mut failed = 0;
    for chunk in files.chunks(args.batch.max(1)) {
        let loaded: Vec<_> = chunk
            .par_iter()
            .map(|p| pixels(p, channels, &args.mean, &args.std))
            .collect();
        // One forward pass per image size in the chunk, in input order within each.
        let mut done: Vec<Option<Vec<f32>>> = vec![None; chunk.len()];
        let mut sizes: Vec<(usize, usize)> = loaded
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .map(|l| (l.0, l.1))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        for (w, h) in sizes {
            let members: Vec<usize> = (0..chunk.len())
                .filter(|&i| matches!(&loaded[i], Ok((lw, lh, _)) if (*lw, *lh) == (w, h)))
                .collect();
            let data: Vec<f32> = members
                .iter()
                .flat_map(|&i| loaded[i].as_ref().unwrap().2.iter().copied())
                .collect();
            let x = Var::constant(Tensor::from_slice(
                &gpu,
                &[members.len(), channels, h, w],
                &data,
            )?);
            let features = no_grad(|| model.features(&x, false))?.value().to_vec()?;
            for (k, &i) in members.iter().enumerate() {
                let len = model.feature_len();
                done[i] = Some(features[k * len..(k + 1) * len].to_vec());
            }
        }
        for ((path, result), features) in chunk.iter().zip(&loaded).zip(done) {
            match (result, features) {
                (Err(e), _) => {
                    bar.suspend(|| eprintln!("{e}"));
                    failed += 1;
                }
                (Ok(_), Some(f)) => rows.push((path.clone(), f)),
                (Ok(_), None) => unreachable!("every readable image is embedded"),
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if rows.is_empty() {
        return Err("no image could be read".into());
    }
    let values: Vec<f32> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
    write_npy(&args.out, rows.len(), model.feature_len(), &values)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    let list = args.out.with_extension("npy.txt");
    let text: String = rows
        .iter()
        .map(|r| format!("{}\n", r.0.display()))
        .collect();
    std::fs::write(&list, text).map_err(|e| format!("{}: {e}", list.display()))?;
    println!(
        "{} images -> {} [{}, {}] ({} unreadable); rows: {}",
        rows.len(),
        args.out.display(),
        rows.len(),
        model.feature_len(),
        failed,
        list.display()
    );
    Ok(())
}
