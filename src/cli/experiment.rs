//! `lim experiment`: the paper's comparison in one command. From CT volumes to a table of
//! downstream AUC against pre-training time, one encoder per reduction of the slices, each
//! stage the same lim command a user could run by hand (listed in EXP/commands.txt), and a
//! rerun skipping what is complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use lim::eval::metrics::mean_std;
use lim::plot::{self, PALETTE, Series};
use serde::Serialize;
use serde_json::{Value, json};

use super::{CliResult, GpuArgs, evaluate, preprocess, pretrain, reduce};

type Failure = Box<dyn std::error::Error>;

#[derive(clap::Args)]
pub struct Args {
    /// tiny: a narrow ResNet-18 at 64 px, 10 epochs, the linear protocol on 600 images a
    /// split, 3 repeats (minutes on a CPU); paper: the paper's SwAV and downstream settings
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "paper"])]
    preset: String,
    /// CT volumes: NIfTI, DICOM series, NRRD (files or folders)
    #[arg(long, required = true, num_args = 1..)]
    volumes: Vec<PathBuf>,
    /// The labelled downstream task (what `lim evaluate` reads)
    #[arg(long)]
    downstream: PathBuf,
    /// The experiment's folder; a rerun continues what it holds
    #[arg(long)]
    out: PathBuf,
    /// Reductions compared: all (none), hash-6 (the paper's), and at hash-6's number of kept
    /// slices every-n, random, and on request ssim, mi and embedding (their thresholds found
    /// by bisection; embedding on a randomly initialised network of the preset's kind)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all,hash-6,every-n,random"
    )]
    methods: Vec<Method>,
    /// Pre-training epochs of every encoder (tiny 10, paper 800)
    #[arg(long)]
    epochs: Option<usize>,
    /// Downstream trainings per encoder (tiny 3, paper 5)
    #[arg(long)]
    repeats: Option<usize>,
    /// Downstream samples per split (tiny 600; paper: all)
    #[arg(long)]
    eval_limit: Option<usize>,
    /// Downstream training epochs (the protocol's by default)
    #[arg(long)]
    eval_epochs: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pre-train data-parallel on these devices, as `lim pretrain --devices` (all, or places
    /// in `lim info`'s list)
    #[arg(long)]
    devices: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Method {
    All,
    #[value(name = "hash-6")]
    Hash6,
    EveryN,
    Random,
    Ssim,
    Mi,
    Embedding,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::All => "all",
            Method::Hash6 => "hash-6",
            Method::EveryN => "every-n",
            Method::Random => "random",
            Method::Ssim => "ssim",
            Method::Mi => "mi",
            Method::Embedding => "embedding",
        }
    }
}

/// The settings a preset fixes.
struct Preset {
    epochs: usize,
    repeats: usize,
    eval_limit: Option<usize>,
    /// `lim evaluate` arguments for every encoder.
    protocol: &'static [&'static str],
    /// `lim evaluate` arguments of the scratch baseline's network.
    scratch: &'static [&'static str],
    /// `lim reduce --method embedding` arguments: the network and input size.
    embedding: &'static [&'static str],
}

impl Preset {
    fn named(name: &str) -> Preset {
        match name {
            "paper" => Preset {
                epochs: 800,
                repeats: 5,
                eval_limit: None,
                protocol: &["--protocol", "paper"],
                scratch: &["--arch", "resnet50"],
                embedding: &["--arch", "resnet50", "--size", "224"],
            },
            _ => Preset {
                epochs: 10,
                repeats: 3,
                eval_limit: Some(600),
                protocol: &["--protocol", "linear", "--size", "64"],
                scratch: &[
                    "--arch", "resnet18", "--width", "0.25", "--mean", "0.1806", "--std", "0.1907",
                ],
                embedding: &["--arch", "resnet18", "--size", "64"],
            },
        }
    }
}

/// A stage's arguments as a user would type them after `lim <command>`.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Stage<T: clap::Args> {
    #[command(flatten)]
    args: T,
}

fn parse<T: clap::Args>(words: &[String]) -> Result<T, Failure> {
    Ok(Stage::<T>::try_parse_from(words)?.args)
}

/// Notes each stage's command in `EXP/commands.txt` before it runs.
struct Runner {
    root: PathBuf,
}

impl Runner {
    fn note(&self, command: &str, words: &[String]) -> Result<(), Failure> {
        use std::io::Write;
        let path = self.root.join("commands.txt");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(file, "lim {command} {}", words.join(" "))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("\n== lim {command} {}", words.join(" "));
        Ok(())
    }
}

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Marks a stage's folder complete.
fn complete(dir: &Path, what: &Value) -> Result<(), Failure> {
    let path = dir.join("stage.json");
    lim::io::write_atomic(&path, serde_json::to_string_pretty(what)?.as_bytes())?;
    Ok(())
}

fn completed(dir: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join("stage.json")).ok()?).ok()
}

/// The step of `every-n` whose kept slices (the first of every n in each volume) come
/// nearest `target`.
fn every_n(slices: &Path, target: f64) -> Result<usize, Failure> {
    let (volumes, _) = lim::select::collect(slices, &lim::select::VolumePattern::Auto)?;
    let longest = volumes.values().map(Vec::len).max().unwrap_or(1);
    let kept = |n: usize| volumes.values().map(|v| v.len().div_ceil(n)).sum::<usize>() as f64;
    Ok((1..=longest.max(1))
        .min_by(|&a, &b| {
            (kept(a) - target)
                .abs()
                .total_cmp(&(kept(b) - target).abs())
        })
        .unwrap_or(1))
}

/// The threshold of a similarity reduction (`lim reduce` arguments `method`) whose kept
/// slices come nearest `target`: 14 bisection steps over [-1, 1.01] (more slices are kept as
/// the threshold of what counts as alike rises), each a reduction into `scratch`.
fn matching_threshold(
    gpu_args: &GpuArgs,
    method: &[String],
    slices: &Path,
    scratch: &Path,
    target: f64,
) -> Result<f64, Failure> {
    let mut words = method.to_vec();
    words.extend([path(slices), path(scratch)]);
    let args: reduce::Args = parse(&words)?;
    let mut count = reduce::counter(gpu_args, &args)?;
    let (mut lo, mut hi) = (-1.0f64, 1.01f64);
    let mut best = (f64::INFINITY, hi);
    for _ in 0..14 {
        let mid = (lo + hi) / 2.0;
        let kept = count(mid)? as f64;
        if (kept - target).abs() < best.0 {
            best = ((kept - target).abs(), mid);
        }
        match kept < target {
            true => lo = mid,
            false => hi = mid,
        }
    }
    let _ = std::fs::remove_dir_all(scratch);
    Ok(best.1)
}

/// Kept slices of a `lim reduce` output.
fn kept(reduced: &Path) -> Result<usize, Failure> {
    let path = reduced.join("reduction.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kept"] == true)
        .count())
}

/// One row of the table.
#[derive(Serialize)]
struct Row {
    method: String,
    slices: Option<usize>,
    pretrain_seconds: Option<f64>,
    /// The pre-training was resumed: its time is the last session's only.
    resumed: bool,
    speedup: Option<f64>,
    /// The test split's metrics: mean and std over the repeats.
    auc: [f64; 2],
    accuracy: [f64; 2],
    f1: [f64; 2],
    report: String,
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let preset = Preset::named(&args.preset);
    let root = args.out.clone();
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let runner = Runner { root: root.clone() };
    let seed = args.seed.to_string();

    // 1. Preprocess.
    let slices = root.join("slices");
    if completed(&slices).is_none() {
        let mut w = words(&["--output", &path(&slices)]);
        w.extend(args.volumes.iter().map(|v| path(v)));
        runner.note("preprocess", &w)?;
        preprocess::run(&parse(&w)?)?;
        complete(&slices, &json!({"stage": "preprocess"}))?;
    }
    let total = std::fs::read_to_string(slices.join("manifest.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    if total == 0 {
        return Err(format!("no slice came out of {:?}", args.volumes).into());
    }

    // 2. Reduce: hash-6 first, since the baselines keep as many slices as it does.
    let reduced = |m: Method| root.join("reduced").join(m.name());
    let mut inputs: Vec<(Method, PathBuf, usize)> = Vec::new();
    let needs_hash = args.methods.iter().any(|m| *m != Method::All);
    let mut hash_kept = None;
    let order = [
        Method::Hash6,
        Method::EveryN,
        Method::Random,
        Method::Ssim,
        Method::Mi,
        Method::Embedding,
    ];
    for method in order {
        if !(args.methods.contains(&method) || method == Method::Hash6 && needs_hash) {
            continue;
        }
        let dir = reduced(method);
        let stage = match completed(&dir) {
            Some(stage) => stage,
            None => {
                let target = hash_kept.unwrap_or(total) as f64;
                let extra = match method {
                    Method::Hash6 => words(&["--method", "hash", "--threshold", "6"]),
                    Method::EveryN => words(&[
                        "--method",
                        "every-n",
                        "--n",
                        &every_n(&slices, target)?.to_string(),
                    ]),
                    Method::Ssim | Method::Mi | Method::Embedding => {
                        let mut w = words(&["--method", method.name()]);
                        if method == Method::Embedding {
                            w.extend(words(preset.embedding));
                        }
                        let scratch = root.join("reduced/search");
                        let threshold =
                            matching_threshold(gpu_args, &w, &slices, &scratch, target)?;
                        w.extend(words(&["--threshold", &threshold.to_string()]));
                        w
                    }
                    _ => words(&[
                        "--method",
                        "random",
                        "--fraction",
                        &(target / total as f64).to_string(),
                        "--seed",
                        &seed,
                    ]),
                };
                let _ = std::fs::remove_dir_all(&dir);
                let mut w = extra;
                w.extend([path(&slices), path(&dir)]);
                runner.note("reduce", &w)?;
                reduce::run(gpu_args, &parse(&w)?)?;
                let stage = json!({"stage": "reduce", "kept": kept(&dir)?});
                complete(&dir, &stage)?;
                stage
            }
        };
        let n = stage["kept"]
            .as_u64()
            .ok_or("a reduction's stage.json without `kept`")? as usize;
        if method == Method::Hash6 {
            hash_kept = Some(n);
        }
        if args.methods.contains(&method) {
            inputs.push((method, dir, n));
        }
    }
    if args.methods.contains(&Method::All) {
        inputs.insert(0, (Method::All, slices.clone(), total));
    }

    // 3. Pre-train one encoder per reduction, with the same epochs and seed.
    let epochs = args.epochs.unwrap_or(preset.epochs).to_string();
    let mut encoders = Vec::new();
    for (method, input, _) in &inputs {
        let run = root.join("pretrain").join(method.name());
        let stage = match completed(&run) {
            Some(stage) => stage,
            None => {
                let resumable = run.join("checkpoints/last.safetensors").is_file();
                let mut w = match resumable {
                    true => words(&["--resume", &path(&run)]),
                    false => {
                        let _ = std::fs::remove_dir_all(&run);
                        words(&[
                            "--preset",
                            &args.preset,
                            "--epochs",
                            &epochs,
                            "--seed",
                            &seed,
                            "--out",
                            &path(&run),
                            &path(input),
                        ])
                    }
                };
                if let Some(devices) = &args.devices {
                    w.extend(words(&["--devices", devices]));
                }
                runner.note("pretrain", &w)?;
                let start = Instant::now();
                pretrain::run(gpu_args, &parse(&w)?)?;
                // A resumed run's wall time is its last session's: the report marks it.
                let seconds = start.elapsed().as_secs_f64();
                let stage = json!({"stage": "pretrain", "seconds": seconds, "resumed": resumable});
                complete(&run, &stage)?;
                stage
            }
        };
        let seconds = stage["seconds"].as_f64().unwrap_or(f64::NAN);
        let resumed = stage["resumed"].as_bool().unwrap_or(false);
        encoders.push((
            method.name().to_string(),
            Some(run.join("checkpoints/last.safetensors")),
            seconds,
            resumed,
        ));
    }
    encoders.push(("scratch".into(), None, f64::NAN, false));

    // 4. Evaluate each encoder, and the randomly initialised network.
    let repeats = args.repeats.unwrap_or(preset.repeats).to_string();
    let mut rows = Vec::new();
    for (name, weights, seconds, resumed) in &encoders {
        let out = root.join("evaluate").join(name);
        if completed(&out).is_none() {
            let mut w = words(preset.protocol);
            match weights {
                Some(weights) => w.extend(words(&["--weights", &path(weights)])),
                None => {
                    w.extend(words(&["--init", "random"]));
                    w.extend(words(preset.scratch));
                }
            }
            if let Some(limit) = args.eval_limit.or(preset.eval_limit) {
                w.extend(words(&["--limit", &limit.to_string()]));
            }
            if let Some(epochs) = args.eval_epochs {
                w.extend(words(&["--epochs", &epochs.to_string()]));
            }
            w.extend(words(&[
                "--repeats",
                &repeats,
                "--seed",
                &seed,
                "--out",
                &path(&out),
                &path(&args.downstream),
            ]));
            runner.note("evaluate", &w)?;
            evaluate::run(gpu_args, &parse(&w)?)?;
            complete(&out, &json!({"stage": "evaluate"}))?;
        }
        let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json"))?)?;
        let metric = |m: &str| -> [f64; 2] {
            let values: Vec<f64> = report["repeats"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["splits"]["test"][m].as_f64())
                .collect();
            let (mean, std) = mean_std(&values);
            [mean, std]
        };
        let all_seconds = encoders
            .first()
            .map(|e| e.2)
            .filter(|_| args.methods.contains(&Method::All));
        let slices = inputs.iter().find(|i| i.0.name() == name).map(|i| i.2);
        rows.push(Row {
            method: name.clone(),
            slices,
            pretrain_seconds: seconds.is_finite().then_some(*seconds),
            resumed: *resumed,
            speedup: all_seconds
                .filter(|_| seconds.is_finite())
                .map(|a| a / seconds),
            auc: metric("auc"),
            accuracy: metric("accuracy"),
            f1: metric("f1"),
            report: path(&out.join("report.md")),
        });
    }

    // 5. The table and the plot.
    let settings = json!({
        "preset": args.preset, "volumes": args.volumes, "downstream": args.downstream,
        "pretrain_epochs": epochs.parse::<usize>().ok(), "repeats": repeats.parse::<usize>().ok(),
        "seed": args.seed, "slices": total, "protocol": preset.protocol.join(" "),
    });
    let json = serde_json::to_string_pretty(&json!({"settings": settings, "rows": rows}))?;
    lim::io::write_atomic(&root.join("report.json"), json.as_bytes())?;
    lim::io::write_atomic(
        &root.join("report.md"),
        markdown(&settings, &rows).as_bytes(),
    )?;
    plot::save_png(&chart(&rows), &root.join("auc_vs_time.png"))?;
    println!("\n{}", table(&rows));
    println!("report: {}", root.join("report.md").display());
    Ok(())
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| method | slices | pre-training (s) | speed-up vs all | test AUC | test accuracy | test F1 |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} ± {:.3} |\n",
            r.method,
            r.slices.map_or("–".into(), |s| s.to_string()),
            opt(r.pretrain_seconds, 0) + if r.resumed { " (resumed)" } else { "" },
            r.speedup.map_or("–".into(), |v| format!("{v:.2}×")),
            r.auc[0],
            r.auc[1],
            r.accuracy[0],
            r.accuracy[1],
            r.f1[0],
            r.f1[1]
        ));
    }
    out
}

fn markdown(settings: &Value, rows: &[Row]) -> String {
    format!(
        "# Experiment: pre-training on reduced CT slices\n\n- settings: `{settings}`\n- test split metrics, mean ± std over the repeats; each method's report is under `evaluate/<method>/report.md`\n- every stage's command is in `commands.txt`\n\n{}\n![test AUC against pre-training time](auc_vs_time.png)\n",
        table(rows)
    )
}

fn chart(rows: &[Row]) -> image::RgbImage {
    let points: Vec<[(f64, f64); 1]> = rows
        .iter()
        .map(|r| [(r.pretrain_seconds.unwrap_or(0.0), r.auc[0])])
        .collect();
    let series: Vec<Series> = rows
        .iter()
        .zip(&points)
        .enumerate()
        .map(|(i, (r, p))| Series {
            name: &r.method,
            points: p,
            colour: PALETTE[i % PALETTE.len()],
            markers: true,
        })
        .collect();
    plot::line_chart(
        "test AUC by encoder",
        "pre-training seconds (scratch: none, at 0)",
        "test AUC",
        &series,
    )
}
