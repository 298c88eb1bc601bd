//! `lim bench hash`: hashing throughput on PNG slices, next to Python imagehash on the same
//! files in the same run, and the PNG-decode-only rate that bounds both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lim::Gpu;
use lim::hash::{self, Algorithm, HashKind, Hasher, Luma8};
use lim::preprocess::{self, NoProgress};
use rayon::prelude::*;
use serde_json::{Value, json};

use super::super::{CliResult, GpuArgs};

#[derive(clap::Args)]
pub struct HashArgs {
    /// A folder of PNG slices. Default: the 512 x 512 axial slices of the two sample chest CTs
    /// (data/samples, `make samples`), written to a temporary folder first
    #[arg(long)]
    slices: Option<PathBuf>,
    /// Timed passes over all files per measurement; the median is reported
    #[arg(long, default_value_t = 5)]
    passes: usize,
    /// The Python with imagehash to compare with; `none` skips it
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print one JSON object per line instead of a table
    #[arg(long)]
    json: bool,
}

/// The default slices: `lim preprocess` (default mode) of the sample chest CTs.
fn sample_slices() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let volumes = Path::new("data/samples/ct_volumes");
    let inputs = [
        volumes.join("lung1_image.nrrd"),
        volumes.join("lung2_image.nrrd"),
    ];
    if let Some(missing) = inputs.iter().find(|p| !p.exists()) {
        return Err(format!(
            "{} is missing: run `make samples` in the lim folder, or give --slices DIR",
            missing.display()
        )
        .into());
    }
    let out = std::env::temp_dir().join(format!("lim-bench-hash-{}", std::process::id()));
    preprocess::run(&inputs, &preprocess::Options::new(&out), &NoProgress)?;
    Ok(out)
}

/// Median seconds of `passes` timed runs after one warm-up run.
fn time<T, E: Into<Box<dyn std::error::Error>>>(
    passes: usize,
    mut work: impl FnMut() -> Result<T, E>,
) -> Result<f64, Box<dyn std::error::Error>> {
    work().map_err(Into::into)?;
    let mut times = Vec::new();
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        work().map_err(Into::into)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The decode bound: a PNG file read and decoded by the `png` crate (which `image` uses)
/// into a buffer.
fn png_read_decode(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    png_decode(path, &bytes)
}

/// A PNG file's bytes, read already, decoded by the `png` crate.
fn png_decode(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, String> {
    lim::bench::decode_png(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Per image and core, in milliseconds: reading a file, decoding it (the `png` crate), and
/// dHash of the decoded image; and `lim hash`'s rate as a fraction of read + decode's.
struct Stages {
    read_ms: f64,
    decode_ms: f64,
    hash_ms: f64,
    of_bound: f64,
}

/// Runs imagehash over `files` in one Python process, as ../shared/peers/hash_bench.py does.
const PYTHON: &str = r#"
import json, statistics, sys, time
import imagehash, PIL
from PIL import Image
passes, files = int(sys.argv[1]), sys.argv[2:]
def decode(p):
    im = Image.open(p); im.load(); return im
decoded = [decode(p) for p in files]
for what, fn, over in [("decode", decode, files),
                       ("decode + dhash", lambda p: imagehash.dhash(Image.open(p)), files),
                       ("decode + phash", lambda p: imagehash.phash(Image.open(p)), files),
                       ("dhash only", imagehash.dhash, decoded),
                       ("phash only", imagehash.phash, decoded)]:
    [fn(x) for x in over]
    ts = []
    for _ in range(passes):
        t = time.perf_counter(); [fn(x) for x in over]; ts.append(time.perf_counter() - t)
    print(json.dumps({"what": what, "seconds": statistics.median(ts),
                      "tool": f"imagehash-{imagehash.__version__} pillow-{PIL.__version__}"}))
"#;

#[derive(Clone)]
struct Row {
    tool: String,
    what: String,
    threads: usize,
    images_per_s: f64,
}

fn python_rows(python: &str, files: &[PathBuf], passes: usize) -> Result<Vec<Row>, String> {
    let output = Command::new(python)
        .args(["-c", PYTHON, &passes.to_string()])
        .args(files)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{python} failed ({}); `{python} -m pip install imagehash` installs what it needs",
            stderr.lines().last().unwrap_or_default()
        ));
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{python}: {e}"))?;
        rows.push(Row {
            tool: v["tool"].as_str().unwrap_or("imagehash").to_string(),
            what: v["what"].as_str().unwrap_or_default().to_string(),
            threads: 1,
            images_per_s: files.len() as f64 / v["seconds"].as_f64().unwrap_or(f64::NAN),
        });
    }
    Ok(rows)
}

pub fn run(gpu_args: &GpuArgs, args: &HashArgs) -> CliResult {
    let dir = match &args.slices {
        Some(dir) => dir.clone(),
        None => sample_slices()?,
    };
    let files: Vec<PathBuf> = lim::io::walk(std::slice::from_ref(&dir))?
        .files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    if files.is_empty() {
        return Err(format!("no PNG files under {}", dir.display()).into());
    }
    let first = hash::open_luma(&files[0])?;
    let shape = format!("{} x {}x{} PNG", files.len(), first.width, first.height);
    let gpu = Gpu::new(&gpu_args.options()?)?;
    let threads = rayon::current_num_threads();
    let n = files.len() as f64;
    let lim_tool = format!("lim-{}", env!("CARGO_PKG_VERSION"));
    let read_all = || -> Result<Vec<Vec<u8>>, std::io::Error> {
        files.par_iter().map(std::fs::read).collect()
    };
    let decode_all = || -> Result<Vec<Luma8>, hash::HashError> {
        files.par_iter().map(|p| hash::open_luma(p)).collect()
    };
    let decoded = decode_all()?;
    let decoded_refs: Vec<&Luma8> = decoded.iter().collect();

    let mut rows = Vec::new();
    let mut add = |what: &str, seconds: f64| {
        rows.push(Row {
            tool: lim_tool.clone(),
            what: what.to_string(),
            threads,
            images_per_s: n / seconds,
        })
    };
    let read = time(args.passes, read_all)?;
    add("read", read);
    let bytes = read_all()?;
    let decode_only = time(args.passes, || {
        files
            .par_iter()
            .zip(&bytes)
            .map(|(p, b)| png_decode(p, b))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let bound = time(args.passes, || {
        files
            .par_iter()
            .map(|p| png_read_decode(p))
            .collect::<Result<Vec<_>, _>>()
    })?;
    add("read + decode, png crate", bound);
    add("decode", time(args.passes, decode_all)?);
    let mut streamed = f64::NAN;
    let mut hash_only = f64::NAN;
    for algorithm in [Algorithm::Dhash, Algorithm::Phash] {
        let kind = HashKind::new(algorithm, 8)?;
        let hasher = Hasher::with_gpu(gpu.clone(), kind)?;
        // `lim hash` on the CPU: each file hashed as it decodes.
        let cpu = || -> CliResult {
            files
                .par_iter()
                .map(|p| hash::hash_file(p, kind))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(())
        };
        let on_gpu = || -> CliResult {
            hasher.hash_images(&decode_all()?.iter().collect::<Vec<_>>())?;
            Ok(())
        };
        let seconds = time(args.passes, cpu)?;
        add(&format!("decode + {algorithm}, CPU"), seconds);
        add(
            &format!("decode + {algorithm}, GPU"),
            time(args.passes, on_gpu)?,
        );
        let cpu_only = || -> CliResult {
            decoded.par_iter().map(|i| hash::hash_luma(i, kind)).count();
            Ok(())
        };
        let gpu_only = || hasher.hash_images(&decoded_refs);
        let only = time(args.passes, cpu_only)?;
        add(&format!("{algorithm} only, CPU"), only);
        add(
            &format!("{algorithm} only, GPU"),
            time(args.passes, gpu_only)?,
        );
        if algorithm == Algorithm::Dhash {
            (streamed, hash_only) = (seconds, only);
        }
    }
    // Per image and core: what each stage costs, and where `lim hash` stands against the
    // bound of reading and decoding the files.
    let per_core_ms = |seconds: f64| seconds * threads as f64 / n * 1e3;
    let stages = Stages {
        read_ms: per_core_ms(read),
        decode_ms: per_core_ms(decode_only),
        hash_ms: per_core_ms(hash_only),
        of_bound: bound / streamed,
    };
    let python = match args.python.as_str() {
        "none" => Err("skipped (--python none)".to_string()),
        python => python_rows(python, &files, args.passes),
    };
    // Each row against imagehash doing the same work ("decode + dhash, GPU" against
    // "decode + dhash").
    let same_work = |row: &Row| -> Option<f64> {
        let what = row.what.split(", ").next().unwrap_or_default();
        let py = python.as_ref().ok()?.iter().find(|p| p.what == what)?;
        Some(row.images_per_s / py.images_per_s)
    };
    let ratios: Vec<Option<f64>> = rows.iter().map(same_work).collect();
    if let Ok(py) = &python {
        rows.extend(py.iter().cloned());
    }

    if args.json {
        let line = json!({
            "tool": lim_tool,
            "what": "stages per image and core",
            "shape": shape,
            "read_ms": stages.read_ms,
            "decode_ms": stages.decode_ms,
            "dhash_ms": stages.hash_ms,
            "hash_vs_decode_bound": stages.of_bound,
            "threads": threads,
        });
        super::print_json(line, &gpu);
        for (i, r) in rows.iter().enumerate() {
            let line = json!({
                "tool": r.tool,
                "what": r.what,
                "shape": shape,
                "images_per_s": r.images_per_s,
                "vs_imagehash": ratios.get(i).copied().flatten(),
                "threads": r.threads,
                "passes": args.passes,
            });
            super::print_json(line, &gpu);
        }
    } else {
        println!("hashing {shape} ({}) on {}", dir.display(), gpu.describe());
        println!(
            "images/s: all files per pass, median of {} passes; \
             against imagehash doing the same work",
            args.passes
        );
        println!(
            "{:<36} {:<24} {:>7} {:>10} {:>14}",
            "what", "tool", "threads", "images/s", "vs imagehash"
        );
        for (i, r) in rows.iter().enumerate() {
            let ratio = ratios
                .get(i)
                .copied()
                .flatten()
                .map_or("-".into(), |x| format!("{x:.1}x"));
            println!(
                "{:<36} {:<24} {:>7} {:>10.0} {ratio:>14}",
                r.what, r.tool, r.threads, r.images_per_s
            );
        }
    }
    if !args.json {
        println!(
            "per image and core: read {:.3} ms, PNG decode {:.3} ms, dHash {:.3} ms; \
             `lim hash` (decode + dHash, CPU) runs at {:.0}% of read + decode",
            stages.read_ms,
            stages.decode_ms,
            stages.hash_ms,
            100.0 * stages.of_bound
        );
    }
    if let Err(why) = python {
        eprintln!("imagehash not measured: {why}");
    }
    if args.slices.is_none() {
        std::fs::remove_dir_all(&dir).map_err(|e| lim::io::IoError::io(&dir, e))?;
    }
    Ok(())
}
