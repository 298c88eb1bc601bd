//! `lim bench scale`: the paper's reduction of a synthetic archive in one run and in N parts
//! (`lim reduce --shard`), and the cost of merging the parts, per volume and globally.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lim::hash::HashKind;
use lim::preprocess::{NoProgress, Pixels};
use lim::select::{self, Hashing, Options, Scope, Shard, Strategy, VolumePattern};
use rayon::prelude::*;
use serde_json::json;

use super::super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// Slices in the synthetic archive
    #[arg(long, default_value_t = 100_000)]
    slices: usize,
    /// Slices per volume
    #[arg(long, default_value_t = 250)]
    per_volume: usize,
    /// Side of the square 8-bit slices, in pixels
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Part counts to split the archive into, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    parts: Vec<usize>,
    /// Where the archive and the outputs go (removed afterwards); default: a temporary folder
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object per line instead of a table
    #[arg(long)]
    json: bool,
}

type Failed = Box<dyn std::error::Error>;

/// Slice `i` of volume `v`: a smooth pattern of the volume's own that drifts from slice to
/// slice, with a little noise, so that runs of neighbours are near-duplicates (as in CT).
fn slice(v: usize, i: usize, size: usize) -> Vec<u8> {
    let seed = lim::io::names::fnv1a(&v.to_le_bytes());
    let (a, b) = (
        0.05 + (seed % 97) as f32 / 400.0,
        0.05 + (seed / 97 % 89) as f32 / 400.0,
    );
    let t = i as f32;
    (0..size * size)
        .map(|p| {
            let (x, y) = ((p % size) as f32, (p / size) as f32);
            let noise = (lim::io::names::fnv1a(&[(p + i * 7) as u8, v as u8]) % 9) as f32;
            let value =
                128.0 + 90.0 * (x * a * 4.0 + t * 0.02).sin() * (y * b * 4.0 - t * 0.015).cos();
            (value + noise).clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Writes the archive: `vol{v:06}/{i:04}.png`, a folder per volume.
fn write_archive(dir: &Path, args: &Args) -> Result<(), Failed> {
    let folder = |v: usize| dir.join(format!("vol{v:06}"));
    for v in 0..args.slices.div_ceil(args.per_volume) {
        std::fs::create_dir_all(folder(v)).map_err(|e| lim::io::IoError::io(&folder(v), e))?;
    }
    (0..args.slices)
        .into_par_iter()
        .try_for_each(|n| -> Result<(), lim::io::IoError> {
            let (v, i) = (n / args.per_volume, n % args.per_volume);
            let path = folder(v).join(format!("{i:04}.png"));
            let pixels = Pixels::Gray8(slice(v, i, args.size));
            let bytes = lim::io::png::encode(args.size, args.size, &pixels)
                .map_err(|e| lim::io::IoError::invalid(&path, e))?;
            std::fs::write(&path, bytes).map_err(|e| lim::io::IoError::io(&path, e))
        })?;
    Ok(())
}

fn options(shard: Option<Shard>) -> Options {
    Options {
        strategy: Strategy::Hash {
            kind: HashKind::DHASH,
            threshold: 6,
        },
        scope: Scope::Volume,
        pattern: VolumePattern::Auto,
        link: true,
        sheets: 0,
        shard,
    }
}

fn seconds<T>(work: impl FnOnce() -> Result<T, Failed>) -> Result<(T, f64), Failed> {
    let start = Instant::now();
    let out = work()?;
    Ok((out, start.elapsed().as_secs_f64()))
}

pub fn run(args: &Args) -> CliResult {
    if args.per_volume == 0 || args.slices < args.per_volume {
        return Err("--slices must hold at least one volume of --per-volume slices".into());
    }
    let root = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("lim-bench-scale-{}", std::process::id()))
    });
    let slices = root.join("slices");
    // Folders of the same archive, written into the file system before any timing; the
    // slices created in parallel on every core.
    let ((), written) = seconds(|| {
        std::fs::create_dir_all(&slices).map_err(|e| lim::io::IoError::io(&slices, e))?;
        write_archive(&slices, args)
    })?;
    let hashing = Hashing::Cpu(HashKind::DHASH);
    let cpu = lim::bench::cpu_name();
    let threads = rayon::current_num_threads();
    let one = root.join("one");
    let (report, whole) = seconds(|| {
        Ok(select::run(
            &slices,
            &one,
            &options(None),
            &hashing,
            &NoProgress,
        )?)
    })?;
    let kept = report.records.iter().filter(|r| r.kept).count();
    let one_global = root.join("one-global");
    let global = Options {
        scope: Scope::Global,
        ..options(None)
    };
    let (_, whole_global) = seconds(|| {
        Ok(select::run(
            &slices,
            &one_global,
            &global,
            &hashing,
            &NoProgress,
        )?)
    })?;
    let reduction = |dir: &Path| std::fs::read(dir.join("reduction.jsonl"));
    let mut rows = Vec::new();
    for &n in &args.parts {
        if n == 0 {
            return Err("--parts: each count must be at least 1".into());
        }
        let mut part_seconds = Vec::new();
        let mut folders = Vec::new();
        for index in 0..n {
            let folder = root.join(format!("parts-{n}/{index}"));
            let shard = Some(Shard { index, count: n });
            let (_, s) = seconds(|| {
                Ok(select::run(
                    &slices,
                    &folder,
                    &options(shard),
                    &hashing,
                    &NoProgress,
                )?)
            })?;
            part_seconds.push(s);
            folders.push(folder);
        }
        let merged = root.join(format!("merged-{n}"));
        let (_, merge) = seconds(|| Ok(select::merge(&folders, &merged, Scope::Volume, true)?))?;
        let merged_global = root.join(format!("merged-global-{n}"));
        let (_, merge_global) = seconds(|| {
            Ok(select::merge(
                &folders,
                &merged_global,
                Scope::Global,
                true,
            )?)
        })?;
        if reduction(&merged)? != reduction(&one)?
            || reduction(&merged_global)? != reduction(&one_global)?
        {
            return Err(format!("the merge of {n} parts differs from one run").into());
        }
        let slowest = part_seconds.iter().copied().fold(0.0, f64::max);
        let total: f64 = part_seconds.iter().sum();
        rows.push((n, total, slowest, merge, merge_global));
    }
    let _ = std::fs::remove_dir_all(&root);

    let per_s = |s: f64| args.slices as f64 / s;
    if args.json {
        let base = json!({
            "tool": format!("lim-{}", env!("CARGO_PKG_VERSION")),
            "cpu": cpu,
            "threads": threads,
            "slices": args.slices,
            "volumes": args.slices.div_ceil(args.per_volume),
            "size": args.size,
            "kept": kept,
        });
        let mut line = base.clone();
        line["what"] = json!("one run");
        line["seconds"] = json!(whole);
        line["seconds_global"] = json!(whole_global);
        line["write_seconds"] = json!(written);
        println!("{line}");
        for (n, total, slowest, merge, merge_global) in rows {
            let mut line = base.clone();
            line["what"] = json!("parts");
            line["parts"] = json!(n);
            line["parts_seconds"] = json!(total);
            line["slowest_part_seconds"] = json!(slowest);
            line["merge_seconds"] = json!(merge);
            line["merge_global_seconds"] = json!(merge_global);
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "{} synthetic {}x{} slices in {} volumes ({kept} kept, Hash-6), written in {written:.1} s; \
         on {cpu}, {threads} threads",
        args.slices,
        args.size,
        args.size,
        args.slices.div_ceil(args.per_volume)
    );
    println!(
        "one run: {whole:.2} s ({:.0} slices/s) per volume, {whole_global:.2} s ({:.0} slices/s) global",
        per_s(whole),
        per_s(whole_global)
    );
    println!(
        "{:>5} {:>14} {:>14} {:>14} {:>16} {:>22}",
        "parts",
        "parts, all s",
        "slowest part s",
        "merge s",
        "merge global s",
        "N machines: slices/s"
    );
    for (n, total, slowest, merge, merge_global) in rows {
        println!(
            "{n:>5} {total:>14.2} {slowest:>14.2} {merge:>14.2} {merge_global:>16.2} {:>22.0}",
            per_s(slowest + merge)
        );
    }
    Ok(())
}
