//! `lim bench`: kernel throughput on the chosen adapter. Every figure is printed with the
//! adapter, backend and driver it was measured on.

use std::sync::Arc;
use std::time::Duration;

use lim::ops::matmul::{MatmulDims, MatmulOptions, MatmulVariant, reference};
use lim::{Gpu, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::{CliResult, GpuArgs};

mod conv;
mod hash;
mod paper;
mod scale;
mod swav;
mod train;

#[derive(clap::Subcommand)]
pub enum Command {
    /// GFLOP/s of every matmul variant on square N x N x N products, and the autotuner's choice
    Matmul(MatmulArgs),
    /// Hashing throughput on PNG slices next to Python imagehash, and the PNG decode rate
    Hash(hash::HashArgs),
    /// `lim preprocess --mode paper` against the paper's two preprocessing scripts on the same
    /// NIfTI and DICOM volumes, with lim's time per stage and the outputs compared
    Preprocess(paper::Args),
    /// Volumes to the kept Hash-6 slices (`lim reduce --from-volumes --mode paper`) against the
    /// paper's preprocessing and reduction scripts run one after the other
    Pipeline(paper::Args),
    /// The paper's reduction of a synthetic archive in one run and in parts (`lim reduce
    /// --shard`), and what merging the parts costs, per volume and globally
    Scale(scale::Args),
    /// GFLOP/s of every conv2d variant on ResNet-18's layers, forward and backward
    Conv(conv::ConvArgs),
    /// ms per optimiser step of a ResNet, images/s, and the dispatches and submissions a step makes
    TrainStep(train::TrainArgs),
    /// ms per SwAV step of a preset, split into augmentation, backbone, head, Sinkhorn, loss,
    /// backward and optimiser, next to a supervised step on the same crops
    SwavStep(swav::SwavArgs),
}

#[derive(clap::Args)]
pub struct MatmulArgs {
    /// Matrix sizes N, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    sizes: Vec<usize>,
    /// Timed runs per variant; the median is reported
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only these variants (names as printed, comma-separated); the autotuner still sees all
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Print one JSON object per line instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(gpu_args: &GpuArgs, cmd: &Command) -> CliResult {
    match cmd {
        Command::Matmul(args) => matmul(gpu_args, args),
        Command::Hash(args) => hash::run(gpu_args, args),
        Command::Preprocess(args) => paper::run(paper::Work::Preprocess, args),
        Command::Pipeline(args) => paper::run(paper::Work::Pipeline, args),
        Command::Scale(args) => scale::run(args),
        Command::Conv(args) => conv::run(gpu_args, args),
        Command::TrainStep(args) => train::run(gpu_args, args),
        Command::SwavStep(args) => swav::run(gpu_args, args),
    }
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
    gpu_median: Option<Duration>,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Wall time of dispatch, submit and wait (as the peers measure), after one warm-up run that
/// compiles the pipeline; GPU timestamps beside it where the adapter has them.
fn measure(
    gpu: &Gpu,
    runs: usize,
    mut work: impl FnMut() -> lim::Result<()>,
) -> lim::Result<Stats> {
    gpu.time(&mut work)?;
    let mut walls = Vec::new();
    let mut gpus = Vec::new();
    for _ in 0..runs.max(1) {
        let ((), t) = gpu.time(&mut work)?;
        walls.push(t.wall);
        gpus.extend(t.gpu);
    }
    Ok(Stats {
        median: median(walls.clone()),
        min: *walls.iter().min().expect("at least one run"),
        max: *walls.iter().max().expect("at least one run"),
        gpu_median: (!gpus.is_empty()).then(|| median(gpus)),
    })
}

/// Largest error of 64 sampled outputs against the f64 reference, relative to the sum of
/// the absolute products.
fn sampled_error(a: &[f32], b: &[f32], c: &[f32], n: usize, rng: &mut StdRng) -> f64 {
    (0..64)
        .map(|_| {
            let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
            let row =
                MatmulDims::infer(&[1, n], &[n, 1], MatmulOptions::default()).expect("valid dims");
            let row_of_a: Vec<f64> = a[i * n..(i + 1) * n].iter().map(|&v| v as f64).collect();
            let column: Vec<f64> = (0..n).map(|k| b[k * n + j] as f64).collect();
            let (want, scale) = reference::matmul(&row_of_a, &column, &row);
            (c[i * n + j] as f64 - want[0]).abs() / scale[0].max(f64::MIN_POSITIVE)
        })
        .fold(0.0, f64::max)
}

/// Prints one JSON line of a measurement, naming lim's version and the adapter it ran on.
fn print_json(mut line: serde_json::Value, gpu: &Gpu) {
    let info = gpu.info();
    let object = line.as_object_mut().expect("a JSON object");
    object
        .entry("tool")
        .or_insert_with(|| json!(format!("lim-{}", env!("CARGO_PKG_VERSION"))));
    object.insert("adapter".into(), json!(info.name));
    object.insert("backend".into(), json!(format!("{:?}", info.backend)));
    object.insert("driver".into(), json!(info.driver));
    object.insert("driver_info".into(), json!(info.driver_info));
    object.insert("bounds_checks".into(), json!(gpu.bounds_checks()));
    println!("{line}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn matmul(gpu_args: &GpuArgs, args: &MatmulArgs) -> CliResult {
    let gpu: Arc<Gpu> = Gpu::new(&gpu_args.options()?)?;
    let unknown: Vec<_> = args
        .variants
        .iter()
        .filter(|v| MatmulVariant::from_name(v).is_none())
        .collect();
    if !unknown.is_empty() {
        let names: Vec<_> = MatmulVariant::all()
            .into_iter()
            .map(MatmulVariant::name)
            .collect();
        return Err(format!(
            "unknown variant(s) {unknown:?}; choose from {}",
            names.join(", ")
        )
        .into());
    }
    if !args.json {
        println!("matmul f32 on {}", gpu.describe());
        println!(
            "wall = dispatch + submit + wait, median of {} runs; gpu = timestamp queries",
            args.runs
        );
        println!(
            "{:>6}  {:<10} {:>10} {:>10} {:>10} {:>9} {:>12}",
            "N", "variant", "wall ms", "GFLOP/s", "gpu ms", "min ms", "max rel err"
        );
    }
    let mut rng = StdRng::seed_from_u64(1);
    for &n in &args.sizes {
        // Refused before the host copies are made.
        let bytes = (n as u64).saturating_mul(n as u64).saturating_mul(4);
        gpu.check_buffer(&format!("a {n} x {n} f32 operand"), bytes)?;
        // The criterion bench's operands.
        let (ha, hb) = (lim::bench::pattern(n * n), lim::bench::pattern(n * n));
        let a = Tensor::from_slice(&gpu, &[n, n], &ha)?;
        let b = Tensor::from_slice(&gpu, &[n, n], &hb)?;
        let dims = MatmulDims::infer(a.shape(), b.shape(), MatmulOptions::default())?;
        for variant in MatmulVariant::available(&gpu) {
            let wanted = args.variants.is_empty() || args.variants.contains(&variant.name());
            if !wanted || !variant.supports(&dims) {
                continue;
            }
            let c = a.matmul_with(&b, dims.opts, variant)?;
            let err = sampled_error(&ha, &hb, &c.to_vec()?, n, &mut rng);
            let s = measure(&gpu, args.runs, || {
                a.matmul_with(&b, dims.opts, variant).map(drop)
            })?;
            let gflops = dims.flops() / s.median.as_secs_f64() / 1e9;
            if args.json {
                let line = json!({
                    "what": "matmul",
                    "variant": variant.name(),
                    "shape": format!("{n}x{n}x{n}"),
                    "median_ms": ms(s.median),
                    "min_ms": ms(s.min),
                    "max_ms": ms(s.max),
                    "runs": args.runs,
                    "gflops": gflops,
                    "gpu_median_ms": s.gpu_median.map(ms),
                    "max_rel_err": err,
                });
                print_json(line, &gpu);
            } else {
                let gpu_ms = s
                    .gpu_median
                    .map_or("-".to_string(), |d| format!("{:.2}", ms(d)));
                println!(
                    "{n:>6}  {:<10} {:>10.2} {gflops:>10.2} {gpu_ms:>10} {:>9.2} {err:>12.1e}",
                    variant.name(),
                    ms(s.median),
                    ms(s.min)
                );
            }
        }
        let was_tuned = gpu.tuned(&dims.tune_key()).is_some();
        a.matmul(&b)?;
        let record = gpu.tuned(&dims.tune_key());
        let choice = record
            .as_ref()
            .map_or("(tuning off)".to_string(), |r| r.choice.clone());
        if args.json {
            let line = json!({
                "what": "matmul-autotune",
                "shape": format!("{n}x{n}x{n}"),
                "autotuned": choice,
                "from_cache": was_tuned,
            });
            print_json(line, &gpu);
        } else {
            let source = if was_tuned {
                "from the autotune cache"
            } else {
                "tuned now"
            };
            println!("{n:>6}  autotuned choice: {choice} ({source})");
        }
    }
    Ok(())
}
