//! `lim bench preprocess` and `lim bench pipeline`: the paper's preprocessing, and volumes to
//! the kept Hash-6 slices, against the paper's scripts (re-created in scripts/paper-scripts.py)
//! on the same inputs in the same run, with lim's time split by stage and its outputs checked
//! against the scripts'.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lim::hash::HashKind;
use lim::preprocess::{self, Mode, NoProgress, Stage, StageClock};
use lim::select::{self, Hashing, Strategy};
use rayon::prelude::*;
use serde_json::{Value, json};

use super::super::CliResult;

/// The paper's scripts, run by the Python given (`python -c`).
const SCRIPTS: &str = include_str!("../../../scripts/paper-scripts.py");

#[derive(clap::Args)]
pub struct Args {
    /// Where the paper's two input layouts are (DIR/petct: NIfTI, DIR/lidc: DICOM), built there
    /// from the sample chest CTs (data/samples, `make samples`) where missing. Default: a
    /// temporary folder, removed afterwards
    #[arg(long)]
    layouts: Option<PathBuf>,
    /// Volumes per layout, when building them
    #[arg(long, default_value_t = 10)]
    volumes: usize,
    /// Timed passes per measurement; the median is reported
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// The Python to run the paper's scripts with (numpy, nibabel, pydicom,
    /// opencv-python-headless, Pillow, imagehash); `none` skips them
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print one JSON object per line instead of a table
    #[arg(long)]
    json: bool,
}

/// What is measured: preprocessing alone, or volumes to the kept slices.
#[derive(Clone, Copy, PartialEq)]
pub enum Work {
    Preprocess,
    Pipeline,
}

type Failed = Box<dyn std::error::Error>;

/// One timed row: who did the work, on how many threads, in how many seconds.
struct Row {
    /// The paper's scripts: what the other rows are compared with.
    script: bool,
    what: String,
    tool: String,
    threads: usize,
    seconds: f64,
}

/// A layout's measurements.
struct Layout {
    name: &'static str,
    volumes: usize,
    slices: usize,
    kept: Option<usize>,
    /// Core milliseconds per slice, by stage.
    stages: Vec<(Stage, f64)>,
    rows: Vec<Row>,
    /// How lim's output compares with the scripts', or why it was not compared.
    same: Result<String, String>,
}

/// The paper's script(s) for a layout, and the names the table gives them.
fn scripts(layout: &str, work: Work) -> Vec<(&'static str, &'static str)> {
    let (preprocess, hash) = match layout {
        "petct" => (
            ("petct", "PET-CT_3DNifti_to_2Dpng.py"),
            ("hash-petct", "Hash_PET-CT_Volume.py"),
        ),
        _ => (
            ("lidc", "LIDC_3DDICOM_to_2Dpng.py"),
            ("hash-lidc", "Hash_LIDC_Volume.py"),
        ),
    };
    match work {
        Work::Preprocess => vec![preprocess],
        Work::Pipeline => vec![preprocess, hash],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A fresh, empty folder.
fn fresh(dir: &Path) -> Result<(), Failed> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| lim::io::IoError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| lim::io::IoError::io(dir, e))?;
    Ok(())
}

/// What a run of lim made.
struct Made {
    volumes: usize,
    slices: usize,
    /// Slices kept (pipeline).
    kept: Option<usize>,
}

/// lim's run of `work` on `input` into `out`, an empty folder.
fn run_lim(
    work: Work,
    input: &Path,
    out: &Path,
    threads: Option<usize>,
    clock: StageClock,
) -> Result<(Made, StageClock), Failed> {
    let opts = preprocess::Options {
        mode: Mode::Paper,
        jobs: threads,
        clock: std::sync::Arc::new(clock),
        ..preprocess::Options::new(out)
    };
    let inputs = [input.to_path_buf()];
    let (report, slices, kept) = match work {
        Work::Preprocess => {
            let report = preprocess::run(&inputs, &opts, &NoProgress)?;
            let slices = report.slices_written;
            (report, slices, None)
        }
        Work::Pipeline => {
            let strategy = Strategy::Hash {
                kind: HashKind::DHASH,
                threshold: 6,
            };
            let hashing = Hashing::Cpu(HashKind::DHASH);
            let (made, reduced) =
                select::run_from_volumes(&inputs, &opts, &strategy, &hashing, &NoProgress)?;
            let kept = reduced.records.iter().filter(|r| r.kept).count();
            (made, reduced.records.len(), Some(kept))
        }
    };
    if report.failed() > 0 {
        return Err(format!("{}: {}", input.display(), report.failures[0].error).into());
    }
    let clock = std::sync::Arc::into_inner(opts.clock).expect("the run is over");
    let made = Made {
        volumes: report.volumes,
        slices,
        kept,
    };
    Ok((made, clock))
}

/// One run of a paper script: its seconds, and the tool line it printed.
fn run_script(python: &str, script: &str, from: &Path, to: &Path) -> Result<(f64, String), String> {
    fresh(to).map_err(|e| e.to_string())?;
    let output = Command::new(python)
        .args(["-c", SCRIPTS, script])
        .args([from, to])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{python} failed on the paper's {script} script ({}); it needs numpy, nibabel, \
             pydicom, opencv-python-headless, Pillow and imagehash",
            stderr.lines().last().unwrap_or_default()
        ));
    }
    let line: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("{python}: {e}"))?;
    let seconds = line["seconds"]
        .as_f64()
        .ok_or("no seconds from the script")?;
    Ok((
        seconds,
        line["tool"].as_str().unwrap_or("python").to_string(),
    ))
}

/// The PNG files directly in `dir`, by name.
fn pngs(dir: &Path) -> Result<BTreeSet<String>, Failed> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| lim::io::IoError::io(dir, e))? {
        let name = entry.map_err(|e| lim::io::IoError::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".png") {
            names.insert(name.into_owned());
        }
    }
    Ok(names)
}

/// Whether lim wrote the files the scripts wrote, with the same pixels.
fn compare(lim_out: &Path, script_out: &Path) -> Result<String, String> {
    let (ours, theirs) = (
        pngs(lim_out).map_err(|e| e.to_string())?,
        pngs(script_out).map_err(|e| e.to_string())?,
    );
    if ours != theirs {
        let only = ours.symmetric_difference(&theirs).next().cloned();
        return Err(format!(
            "DIFFERENT: {} files from lim, {} from the scripts (e.g. {})",
            ours.len(),
            theirs.len(),
            only.unwrap_or_default()
        ));
    }
    for name in &ours {
        let decode = |dir: &Path| -> Result<Vec<u8>, String> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            lim::bench::decode_png(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        };
        if decode(lim_out)? != decode(script_out)? {
            return Err(format!("DIFFERENT: the pixels of {name}"));
        }
    }
    Ok(format!("the same {} files, pixel for pixel", ours.len()))
}

fn measure(
    args: &Args,
    work: Work,
    name: &'static str,
    layouts: &Path,
    scratch: &Path,
) -> Result<Layout, Failed> {
    let input = layouts.join(name);
    // Every run writes into a new folder, and none is removed before the bench ends: on an
    // ext4 without a journal, a file created soon after many were deleted costs up to a
    // millisecond of kernel time (its inode search steps over each recently deleted one): a
    // cost that a user's run into a new folder does not pay, and that fell most on the
    // scripts' runs, which came after lim's.
    let lim_out = scratch.join(format!("lim-{name}"));
    let threads = rayon::current_num_threads();
    let lim_tool = format!("lim-{}", env!("CARGO_PKG_VERSION"));
    let command = match work {
        Work::Preprocess => "lim preprocess --mode paper",
        Work::Pipeline => "lim reduce --from-volumes --mode paper",
    };
    // One run with the stage clock on, which also warms the page cache; on one thread, where
    // a stage's wall time is its core time.
    fresh(&lim_out)?;
    let (made, clock) = run_lim(work, &input, &lim_out, Some(1), StageClock::on())?;
    let slices = made.slices;
    let stages = Stage::ALL
        .into_iter()
        .filter(|&s| work == Work::Pipeline || s != Stage::Hash)
        .map(|s| (s, clock.seconds(s) * 1e3 / slices.max(1) as f64))
        .collect();
    let mut rows = Vec::new();
    for t in [1, threads] {
        let mut seconds = Vec::new();
        for pass in 0..args.passes.max(1) {
            let out = scratch.join(format!("lim-{name}-{t}-{pass}"));
            fresh(&out)?;
            let start = Instant::now();
            run_lim(work, &input, &out, Some(t), StageClock::default())?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        rows.push(Row {
            script: false,
            what: command.to_string(),
            tool: lim_tool.clone(),
            threads: t,
            seconds: median(seconds),
        });
        if threads == 1 {
            break;
        }
    }
    rows.extend(inflate_bound(&input, threads, args.passes)?);
    let mut same = Err("not compared: the scripts were not run (--python none)".to_string());
    if args.python != "none" {
        let steps = scripts(name, work);
        let mut total = vec![0.0; args.passes.max(1)];
        let mut from = input.clone();
        let mut tool = String::new();
        for (pass, t) in total.iter_mut().enumerate() {
            from = input.clone();
            for (i, &(script, _)) in steps.iter().enumerate() {
                let to = scratch.join(format!("script-{name}-{i}-{pass}"));
                let (seconds, printed) = run_script(&args.python, script, &from, &to)?;
                *t += seconds;
                tool = printed;
                from = to;
            }
        }
        let what: Vec<&str> = steps.iter().map(|s| s.1).collect();
        rows.push(Row {
            script: true,
            what: what.join(" + "),
            tool,
            threads: 1,
            seconds: median(total),
        });
        same = compare(&lim_out, &from);
    }
    Ok(Layout {
        name,
        volumes: made.volumes,
        slices,
        kept: made.kept,
        stages,
        rows,
        same,
    })
}

/// The bound of a layout of gzip volumes: every file read and inflated (libdeflate, in one
/// call, as lim's reader does) and nothing else, on one thread and on `threads`; no rows for
/// a layout without gzip files.
fn inflate_bound(input: &Path, threads: usize, passes: usize) -> Result<Vec<Row>, Failed> {
    let files: Vec<PathBuf> = lim::io::walk(&[input.to_path_buf()])?
        .files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "gz"))
        .collect();
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let inflate = |path: &PathBuf| -> Result<usize, String> {
        let gz = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let size = gz.len().checked_sub(4).map_or(0, |at| {
            u32::from_le_bytes(gz[at..].try_into().expect("four bytes")) as usize
        });
        let mut out = vec![0; size];
        libdeflater::Decompressor::new()
            .gzip_decompress(&gz, &mut out)
            .map_err(|e| format!("{}: {e:?} (over 4 GiB inflated?)", path.display()))
    };
    let mut rows = Vec::new();
    for t in [1, threads] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        let mut seconds = Vec::new();
        for _ in 0..passes.max(1) {
            let start = Instant::now();
            pool.install(|| files.par_iter().map(inflate).collect::<Result<Vec<_>, _>>())?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        rows.push(Row {
            script: false,
            what: "read + inflate the volumes only: the bound".into(),
            tool: "libdeflate".into(),
            threads: t,
            seconds: median(seconds),
        });
        if threads == 1 {
            break;
        }
    }
    Ok(rows)
}

pub fn run(work: Work, args: &Args) -> CliResult {
    let scratch = std::env::temp_dir().join(format!("lim-bench-preprocess-{}", std::process::id()));
    let layouts = args
        .layouts
        .clone()
        .unwrap_or_else(|| scratch.join("layouts"));
    lim::bench::paper_layouts(Path::new("data/samples"), &layouts, args.volumes)?;
    let cpu = lim::bench::cpu_name();
    let threads = rayon::current_num_threads();
    let mut measured = Vec::new();
    for name in lim::bench::PAPER_LAYOUTS {
        measured.push(measure(args, work, name, &layouts, &scratch)?);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    for layout in &measured {
        let script = layout.rows.iter().find(|r| r.script);
        let vs = |r: &Row| script.map(|s| s.seconds / r.seconds);
        if args.json {
            let mut line = json!({
                "what": "stages per slice and core",
                "layout": layout.name,
                "cpu": cpu,
                "threads": threads,
                "slices": layout.slices,
            });
            for (stage, ms) in &layout.stages {
                line[format!("{}_ms", stage.name().replace(" + ", "_"))] = json!(ms);
            }
            println!("{line}");
            for r in &layout.rows {
                let line = json!({
                    "what": r.what,
                    "layout": layout.name,
                    "tool": r.tool,
                    "cpu": cpu,
                    "threads": r.threads,
                    "volumes": layout.volumes,
                    "slices": layout.slices,
                    "kept": layout.kept,
                    "seconds": r.seconds,
                    "slices_per_s": layout.slices as f64 / r.seconds,
                    "vs_script": vs(r),
                    "passes": args.passes,
                });
                println!("{line}");
            }
            let line = json!({
                "what": "outputs",
                "layout": layout.name,
                "identical": layout.same.is_ok(),
                "detail": match &layout.same { Ok(s) | Err(s) => s },
            });
            println!("{line}");
            continue;
        }
        let kept = layout
            .kept
            .map_or(String::new(), |k| format!(", {k} kept (Hash-6)"));
        println!(
            "{}: {} volumes, {} slices{kept}; on {cpu}",
            layout.name, layout.volumes, layout.slices
        );
        let stages: Vec<String> = layout
            .stages
            .iter()
            .map(|(s, ms)| format!("{} {ms:.2}", s.name()))
            .collect();
        let sum: f64 = layout.stages.iter().map(|s| s.1).sum();
        println!(
            "  ms per slice and core: {} (sum {sum:.2})",
            stages.join(", ")
        );
        println!(
            "  {:<50} {:<44} {:>7} {:>9} {:>8} {:>10}",
            "what", "tool", "threads", "slices/s", "seconds", "vs script"
        );
        for r in &layout.rows {
            let ratio = vs(r).map_or("-".into(), |x| format!("{x:.1}x"));
            println!(
                "  {:<50} {:<44} {:>7} {:>9.0} {:>8.2} {ratio:>10}",
                r.what,
                r.tool,
                r.threads,
                layout.slices as f64 / r.seconds,
                r.seconds
            );
        }
        match &layout.same {
            Ok(s) => println!("  outputs: {s}"),
            Err(s) => println!("  outputs: {s}"),
        }
    }
    if measured
        .iter()
        .any(|l| l.same.as_ref().is_err_and(|e| e.starts_with("DIFFERENT")))
    {
        return Err("lim's output differs from the paper scripts'".into());
    }
    Ok(())
}
