//! `lim preprocess`: CT volumes (NIfTI, DICOM series, NRRD) to 2-D PNG slices, with a
//! manifest of where each slice came from.
//!
//! The default mode writes axial slices in patient orientation, inferior to superior, through
//! a window; `Mode::Paper` reproduces the paper's two scripts exactly, quirks and file names
//! included (reference/less-is-more.md §1.2, §1.3).

mod clock;
mod discover;
pub mod intensity;
pub mod slicing;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::Error;
use crate::io::dicom::{self, SliceOrder};
pub use crate::io::png::Pixels;
use crate::io::{self, Failure, IoError, Samples, Volume};
use crate::io::{jsonl, png};
pub use clock::{Stage, StageClock};
use discover::{Job, Naming, Source, discover, frame_numbers};
use intensity::{Range, Window};
use slicing::SlicePlan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Default,
    /// The paper's scripts: stored slice order, per-slice min-max, 8-bit, native size.
    Paper,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub window: Window,
    /// Resize slices to `size` x `size` (default mode).
    pub size: Option<u32>,
    /// 16-bit PNGs (default mode).
    pub sixteen_bit: bool,
    /// Threads; `None` uses every core.
    pub jobs: Option<usize>,
    /// Stop at the first failure.
    pub strict: bool,
    pub output: PathBuf,
    /// Times each stage (`lim bench`); off by default.
    pub clock: Arc<StageClock>,
}

impl Options {
    pub fn new(output: impl Into<PathBuf>) -> Options {
        Options {
            mode: Mode::Default,
            window: Window::MinMax,
            size: None,
            sixteen_bit: false,
            jobs: None,
            strict: false,
            output: output.into(),
            clock: Arc::default(),
        }
    }
}

/// One line of `manifest.jsonl`: a slice and where it came from.
#[derive(Clone, Debug, Serialize)]
pub struct SliceRecord {
    /// Relative to the output folder.
    pub path: String,
    pub sources: Vec<PathBuf>,
    pub volume: String,
    pub slice: usize,
    /// Position of the slice along the patient's inferior-superior axis (LPS z), if known.
    pub z_mm: Option<f64>,
    /// Spacing along the PNG's columns, rows, and between slices.
    pub spacing_mm: [f64; 3],
    /// Width and height of the PNG.
    pub size: [usize; 2],
    /// The values mapped to black and white: the window, or the slice's min and max.
    pub range: [f64; 2],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub volumes: usize,
    pub slices_written: usize,
    /// Slices already complete from an earlier run.
    pub slices_existing: usize,
    pub failures: Vec<Failure>,
    /// Files in the input folders that are not medical images lim reads.
    pub ignored: usize,
    /// `strict` stopped the run early.
    pub stopped: bool,
}

impl Report {
    /// Failures that count (not skipped non-image objects).
    pub fn failed(&self) -> usize {
        self.failures.iter().filter(|f| !f.skipped).count()
    }
}

/// Told about progress, from worker threads.
pub trait Progress: Sync {
    fn start(&self, volumes: usize);
    fn volume_done(&self, volume: &str, slices: usize);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: usize) {}
    fn volume_done(&self, _: &str, _: usize) {}
}

/// Reads, slices, maps and writes the volumes under `inputs` into `opts.output`.
pub fn run(inputs: &[PathBuf], opts: &Options, progress: &dyn Progress) -> crate::Result<Report> {
    run_with(inputs, opts, progress, &WriteAll)
}

/// A slice made in memory, and where it goes.
pub struct Made {
    pub record: SliceRecord,
    pub pixels: Pixels,
    pub width: usize,
    pub height: usize,
}

/// What happens to each volume's slices once they are made.
pub trait Sink: Sync {
    /// Takes one volume's slices in slice order; returns the records for the manifest, and
    /// how many slices were written and how many were already there. An [`Error::Io`] is
    /// that volume's failure, unless the disk is full; a full disk and any other error (the
    /// GPU's) stop the run.
    fn volume(&self, slices: Vec<Made>, opts: &Options) -> crate::Result<Written>;
}

/// What a sink did with a volume.
pub struct Written {
    pub records: Vec<SliceRecord>,
    pub written: usize,
    pub existing: usize,
}

/// The plain preprocessing sink: every slice to its PNG, skipping complete ones.
pub struct WriteAll;

impl Sink for WriteAll {
    fn volume(&self, slices: Vec<Made>, opts: &Options) -> crate::Result<Written> {
        Ok(write_slices(slices, opts)?)
    }
}

/// Writes `slices` into `opts.output` in parallel, skipping complete ones.
pub fn write_slices(slices: Vec<Made>, opts: &Options) -> Result<Written, IoError> {
    // Each folder made once, rather than looked up again (under its parent's lock) per slice.
    let folders: std::collections::BTreeSet<PathBuf> = slices
        .iter()
        .filter_map(|made| {
            opts.output
                .join(&made.record.path)
                .parent()
                .map(Path::to_path_buf)
        })
        .collect();
    for dir in &folders {
        std::fs::create_dir_all(dir).map_err(|e| IoError::io(dir, e))?;
    }
    let wrote = slices
        .par_iter()
        .map(|made| write_slice(made, opts))
        .collect::<Result<Vec<bool>, _>>()?;
    let written = wrote.iter().filter(|&&w| w).count();
    Ok(Written {
        records: slices.into_iter().map(|m| m.record).collect(),
        written,
        existing: wrote.len() - written,
    })
}

/// Writes a slice into its folder in `opts.output` unless its file is already there; whether
/// it wrote.
fn write_slice(made: &Made, opts: &Options) -> Result<bool, IoError> {
    let path = opts.output.join(&made.record.path);
    if path.exists() {
        return Ok(false);
    }
    let bytes = opts
        .clock
        .time(Stage::Encode, || {
            png::encode(made.width, made.height, &made.pixels)
        })
        .map_err(|e| IoError::invalid(&path, e))?;
    opts.clock
        .time(Stage::Write, || io::write_atomic(&path, &bytes))?;
    Ok(true)
}

/// Why a volume gave no slices: its inputs' failures, or an error no input caused (the
/// device's), which stops the run.
enum Failed {
    Inputs(Vec<Failure>),
    Run(Error),
}

/// Reads, slices and maps the volumes under `inputs`, handing each volume's slices to `sink`.
/// A volume that cannot be read is a failure in the report; an error of the sink's own (the
/// GPU's) stops the run and is returned.
pub fn run_with(
    inputs: &[PathBuf],
    opts: &Options,
    progress: &dyn Progress,
    sink: &dyn Sink,
) -> crate::Result<Report> {
    std::fs::create_dir_all(&opts.output).map_err(|e| IoError::io(&opts.output, e))?;
    let _lock = io::lock::OutputLock::acquire(&opts.output)?;
    let (jobs, mut failures, ignored) = discover(inputs, opts.mode)?;
    progress.start(jobs.len());
    let stop = AtomicBool::new(opts.strict && failures.iter().any(|f| !f.skipped));
    let work = || -> Vec<Option<Result<Done, Failed>>> {
        jobs.par_iter()
            .map(|job| {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    process(job, opts, sink)
                }))
                .unwrap_or_else(|panic| {
                    Err(Failed::Inputs(vec![Failure {
                        input: job.source.path().to_path_buf(),
                        error: format!(
                            "internal error while processing: {}",
                            crate::error::panic_text(panic.as_ref())
                        ),
                        skipped: false,
                    }]))
                });
                let failed = match &outcome {
                    Ok(done) => done.failures.iter().any(|f| !f.skipped),
                    Err(_) => true,
                };
                if failed && opts.strict || matches!(outcome, Err(Failed::Run(_))) {
                    stop.store(true, Ordering::Relaxed);
                }
                progress.volume_done(&job.id, outcome.as_ref().map_or(0, |d| d.records.len()));
                Some(outcome)
            })
            .collect()
    };
    let outcomes = match opts.jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| IoError::invalid(&opts.output, format!("cannot start {n} threads: {e}")))?
            .install(work),
        None => work(),
    };

    let mut report = Report {
        ignored,
        ..Report::default()
    };
    let mut records = Vec::new();
    for outcome in outcomes {
        match outcome {
            None => report.stopped = true,
            Some(Ok(mut done)) => {
                report.volumes += 1;
                report.slices_written += done.written;
                report.slices_existing += done.existing;
                failures.append(&mut done.failures);
                records.append(&mut done.records);
            }
            Some(Err(Failed::Inputs(mut f))) => failures.append(&mut f),
            Some(Err(Failed::Run(e))) => return Err(e),
        }
    }
    jsonl::write_all(&opts.output.join("manifest.jsonl"), &records)?;
    jsonl::write_all(&opts.output.join("failures.jsonl"), &failures)?;
    report.failures = failures;
    Ok(report)
}

/// One volume's slices, handed to the sink.
struct Done {
    records: Vec<SliceRecord>,
    failures: Vec<Failure>,
    written: usize,
    existing: usize,
}

fn process(job: &Job, opts: &Options, sink: &dyn Sink) -> Result<Done, Failed> {
    let (made, failures) = make_slices(job, opts).map_err(Failed::Inputs)?;
    let written = sink.volume(made, opts).map_err(|e| match e {
        Error::Io(e) if !e.is_disk_full() => Failed::Inputs(vec![e.into()]),
        other => Failed::Run(other),
    })?;
    Ok(Done {
        records: written.records,
        failures,
        written: written.written,
        existing: written.existing,
    })
}

/// Reads one volume and makes its slices in memory, with the failures of files left out.
fn make_slices(job: &Job, opts: &Options) -> Result<(Vec<Made>, Vec<Failure>), Vec<Failure>> {
    let order = if opts.mode == Mode::Paper {
        SliceOrder::FileName
    } else {
        SliceOrder::Position
    };
    let clock = &opts.clock;
    if clock.is_on() {
        let files = match &job.source {
            Source::File(path) => std::slice::from_ref(path),
            Source::Series(series) => &series.files[..],
        };
        clock.time(Stage::Read, || files.iter().map(std::fs::read).count());
    }
    let (volume, file_errors) = clock
        .time(Stage::Decode, || match &job.source {
            Source::File(path) => Ok((io::read_volume(path)?, Vec::new())),
            Source::Series(series) => {
                let read = dicom::read_series(series, order)?;
                Ok((read.volume, read.file_errors))
            }
        })
        .map_err(|e: IoError| vec![e.into()])?;
    let plan = match opts.mode {
        Mode::Paper => SlicePlan::stored(),
        Mode::Default => SlicePlan::axial(&volume.affine),
    };
    let slices = plan.shape(volume.dims)[2];
    let digits = slices.saturating_sub(1).to_string().len().max(4);
    let spacing = plan.spacing(&volume);
    let names: Vec<String> = match (&job.naming, &job.source) {
        (Naming::Counter { patient, first }, Source::Series(series)) => {
            frame_numbers(*first, series, &volume)
                .iter()
                .map(|n| format!("{patient}_{n}.png"))
                .collect()
        }
        (Naming::Study { patient, study }, _) => (0..slices)
            .map(|s| format!("{patient}_{study}_{s}.png"))
            .collect(),
        _ => (0..slices)
            .map(|s| format!("{}/{s:0digits$}.png", job.id))
            .collect(),
    };
    // The slices of a volume in parallel too, so that the last volumes of a run (and a run of
    // one volume) keep every core busy.
    let make = |scratch: &mut Scratch, (s, name): (usize, String)| -> Result<Made, Vec<Failure>> {
        let (pixels, width, height, range) = clock.time(Stage::Slice, || match opts.mode {
            Mode::Paper => paper_slice(&volume, s, scratch).map_err(|e| vec![e.into()]),
            Mode::Default => Ok(default_slice(&volume, &plan, s, opts, scratch)),
        })?;
        let stored_k = plan.voxel(volume.dims, s, 0, 0)[2];
        let z_mm = match (&volume.slice_positions, opts.mode) {
            (Some(positions), Mode::Paper) => positions[stored_k].map(|p| p[2]),
            _ => Some(plan.origin(&volume, s)[2]),
        };
        let sources = match &volume.slice_sources {
            Some(index) if plan.slices.stored == 2 => vec![volume.sources[index[stored_k]].clone()],
            _ => volume.sources.clone(),
        };
        let record = SliceRecord {
            path: name,
            sources,
            volume: job.id.clone(),
            slice: s,
            z_mm,
            spacing_mm: spacing,
            size: [width, height],
            range: [range.low, range.high],
            notes: volume.notes.clone(),
        };
        Ok(Made {
            record,
            pixels,
            width,
            height,
        })
    };
    let made = names
        .into_par_iter()
        .enumerate()
        .map_init(Scratch::default, make)
        .collect::<Result<Vec<Made>, _>>()?;
    Ok((made, file_errors.into_iter().map(Failure::from).collect()))
}

/// Buffers reused from slice to slice.
#[derive(Default)]
struct Scratch {
    values: Vec<Option<f64>>,
    plain: Vec<f64>,
    grey: Vec<f64>,
}

/// The paper's scripts on stored slice `s`: 8-bit, native size.
fn paper_slice(
    volume: &Volume,
    s: usize,
    scratch: &mut Scratch,
) -> Result<(Pixels, usize, usize, Range), IoError> {
    let [columns, rows, _] = volume.dims;
    let plane = columns * rows;
    let mut out = Vec::with_capacity(plane);
    let range = match (&volume.rescale_tags, &volume.samples) {
        (Some(tags), Samples::I32(stored)) => intensity::paper_dicom(
            &stored[s * plane..(s + 1) * plane],
            tags[s][0],
            tags[s][1],
            &mut out,
        ),
        (Some(_), _) => {
            return Err(IoError::unsupported(
                &volume.sources[0],
                "--mode paper on colour or non-integer DICOM (the paper's script reads grey levels)",
            ));
        }
        (None, samples) => {
            let rescale = volume.rescale_of(s);
            let slice = s * plane..(s + 1) * plane;
            // Integer samples go through a table of the slice's range.
            macro_rules! tabled {
                ($($variant:ident),*) => {
                    match samples {
                        $(Samples::$variant(v) => {
                            intensity::paper_nifti_stored(&v[slice.clone()], rescale, &mut out)
                        })*
                        _ => None,
                    }
                };
            }
            let tabled = tabled!(U8, I8, U16, I16, U32, I32);
            match tabled {
                Some(range) => range,
                None => {
                    volume.samples.gather(slice, &mut scratch.plain);
                    for v in &mut scratch.plain {
                        *v = rescale.apply(*v);
                    }
                    intensity::paper_nifti(&scratch.plain, &mut out)
                }
            }
        }
    };
    Ok((Pixels::Gray8(out), columns, rows, range))
}

/// The default mode on output slice `s`: windowed, optionally resized, 8 or 16 bits.
fn default_slice(
    volume: &Volume,
    plan: &SlicePlan,
    s: usize,
    opts: &Options,
    scratch: &mut Scratch,
) -> (Pixels, usize, usize, Range) {
    let [mut width, mut height, _] = plan.shape(volume.dims);
    let max = if opts.sixteen_bit { 65535.0 } else { 255.0 };
    plan.values(volume, s, &mut scratch.values);
    let range = intensity::window(
        &scratch.values,
        opts.window,
        volume.window,
        max,
        &mut scratch.grey,
    );
    if volume.inverted {
        for v in &mut scratch.grey {
            *v = max - *v;
        }
    }
    if let Some(n) = opts.size {
        // image's resize takes f32 samples as 0..1 and clamps to that range.
        let unit: Vec<f32> = scratch.grey.iter().map(|&v| (v / max) as f32).collect();
        let image = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(
            width as u32,
            height as u32,
            unit,
        )
        .expect("buffer matches its size");
        let resized = image::imageops::resize(&image, n, n, image::imageops::FilterType::Triangle);
        scratch.grey = resized
            .into_raw()
            .into_iter()
            .map(|v| f64::from(v) * max)
            .collect();
        (width, height) = (n as usize, n as usize);
    }
    let pixels = if opts.sixteen_bit {
        Pixels::Gray16(
            scratch
                .grey
                .iter()
                .map(|&v| intensity::quantise(v, max) as u16)
                .collect(),
        )
    } else {
        Pixels::Gray8(
            scratch
                .grey
                .iter()
                .map(|&v| intensity::quantise(v, max) as u8)
                .collect(),
        )
    };
    (pixels, width, height, range)
}
