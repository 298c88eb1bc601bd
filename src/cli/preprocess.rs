//! `lim preprocess`: CT volumes to PNG slices, with a progress bar and a summary.

use std::path::PathBuf;

use lim::preprocess::intensity::Window;
use lim::preprocess::{self, Mode, Options};

use super::{CliResult, VolumeBar};

#[derive(clap::Args)]
pub struct Args {
    /// Files or folders (searched recursively) of NIfTI (.nii, .nii.gz, .hdr/.img), DICOM and NRRD
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where the PNGs, manifest.jsonl and failures.jsonl go
    #[arg(long, short)]
    output: PathBuf,
    /// `default`: axial slices in patient orientation, through --window. `paper`: exactly the
    /// paper's scripts (stored order, per-slice min-max, its file names)
    #[arg(long, default_value = "default", value_parser = ["default", "paper"])]
    mode: String,
    /// minmax (per slice), dicom (the file's own), lung, mediastinum, abdomen, bone, brain, or
    /// W/L such as 1500/-600
    #[arg(long, default_value = "minmax")]
    window: String,
    /// Resize every slice to N x N
    #[arg(long, value_name = "N")]
    size: Option<u32>,
    /// Write 16-bit PNGs
    #[arg(long)]
    sixteen_bit: bool,
    /// Threads (default: all cores)
    #[arg(long)]
    jobs: Option<usize>,
    /// Stop at the first input that fails
    #[arg(long)]
    strict: bool,
}

pub fn run(args: &Args) -> CliResult {
    let mode = if args.mode == "paper" {
        Mode::Paper
    } else {
        Mode::Default
    };
    let window: Window = args.window.parse()?;
    if mode == Mode::Paper && (args.size.is_some() || args.sixteen_bit || args.window != "minmax") {
        return Err("--mode paper writes the paper's 8-bit, native-size, min-max slices: drop --size, --sixteen-bit and --window".into());
    }
    let opts = Options {
        mode,
        window,
        size: args.size,
        sixteen_bit: args.sixteen_bit,
        jobs: args.jobs,
        strict: args.strict,
        ..Options::new(&args.output)
    };
    let bar = VolumeBar::new();
    let report = preprocess::run(&args.inputs, &opts, &bar)?;
    bar.0.finish_and_clear();

    for f in &report.failures {
        eprintln!("{}", f.error);
    }
    let skipped = report.failures.len() - report.failed();
    println!(
        "{} volumes: {} slices written, {} already there; {} inputs failed, {} non-image objects skipped, {} other files ignored",
        report.volumes,
        report.slices_written,
        report.slices_existing,
        report.failed(),
        skipped,
        report.ignored
    );
    println!("manifest: {}", args.output.join("manifest.jsonl").display());
    if report.failed() > 0 {
        println!("failures: {}", args.output.join("failures.jsonl").display());
    }
    if report.stopped || (args.strict && report.failed() > 0) {
        return Err("stopped at the first failure (--strict)".into());
    }
    if report.volumes == 0 {
        return Err("no volume could be read".into());
    }
    Ok(())
}
