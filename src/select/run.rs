//! A selection run on files: read a slice folder (or slice volumes in memory), decide per
//! group, copy or link the kept slices, and write `reduction.jsonl`, `failures.jsonl`, the
//! kept slices' manifest lines and contact sheets.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::collect::{Scope, VolumePattern, collect, manifest_lines};
use super::rule::{Strategy, decide};
use super::shard::{self, Shard};
use super::sheet;
use crate::hash::{self, Hash, HashError, HashKind, Hasher, Luma8};
use crate::io::{Failure, IoError};
use crate::preprocess::{self, Made, Sink, Written};
use crate::{Error, Result};

/// What reduction decided for one slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Relative to the input (and output) folder.
    pub path: String,
    pub volume: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub kept: bool,
    /// The kept slice this one was dropped for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exemplar: Option<String>,
    /// Hamming distance to the exemplar (hashes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<u32>,
    /// SSIM, NMI or the features' cosine similarity with the exemplar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// How slices are hashed.
pub enum Hashing {
    Cpu(HashKind),
    Gpu(Hasher),
}

impl Hashing {
    fn kind(&self) -> HashKind {
        match self {
            Hashing::Cpu(kind) => *kind,
            Hashing::Gpu(hasher) => hasher.kind(),
        }
    }

    /// Hashes image files, each to its hash or the error that names it: on the CPU each file
    /// as it decodes ([`hash::hash_file`]), on the GPU decoded first, then in one batch.
    pub fn hash_files(
        &self,
        files: &[PathBuf],
    ) -> std::result::Result<Vec<std::result::Result<Hash, HashError>>, HashError> {
        match self {
            Hashing::Cpu(kind) => Ok(files
                .par_iter()
                .map(|f| hash::hash_file(f, *kind))
                .collect()),
            Hashing::Gpu(hasher) => {
                let images: Vec<_> = files.par_iter().map(|f| hash::open_luma(f)).collect();
                let readable: Vec<&Luma8> = images.iter().filter_map(|i| i.as_ref().ok()).collect();
                let mut hashes = hasher.hash_images(&readable)?.into_iter();
                Ok(images
                    .into_iter()
                    .map(|i| i.map(|_| hashes.next().expect("a hash per readable image")))
                    .collect())
            }
        }
    }

    pub fn hash(&self, images: &[&Luma8]) -> std::result::Result<Vec<Hash>, HashError> {
        match self {
            Hashing::Cpu(kind) => Ok(images
                .par_iter()
                .map(|i| hash::hash_luma(i, *kind))
                .collect()),
            Hashing::Gpu(hasher) => hasher.hash_images(images),
        }
    }
}

/// Options of a reduction.
pub struct Options {
    pub strategy: Strategy,
    pub scope: Scope,
    pub pattern: VolumePattern,
    /// Hard-link kept slices instead of copying them.
    pub link: bool,
    /// Contact sheets for this many volumes.
    pub sheets: usize,
    /// Only this part of the volumes ([`shard::merge`] joins the parts).
    pub shard: Option<Shard>,
}

/// What a reduction did.
#[derive(Debug, Default)]
pub struct Report {
    pub records: Vec<Record>,
    pub failures: Vec<Failure>,
}

impl Report {
    /// `(volume, slices, kept)` in volume order.
    pub fn summary(&self) -> Vec<(String, usize, usize)> {
        let mut out: Vec<(String, usize, usize)> = Vec::new();
        for r in &self.records {
            match out.last_mut() {
                Some((v, total, kept)) if *v == r.volume => {
                    *total += 1;
                    *kept += r.kept as usize;
                }
                _ => out.push((r.volume.clone(), 1, r.kept as usize)),
            }
        }
        out
    }
}

/// Reduces the slices under `input` into `output`: the kept slices, `reduction.jsonl`,
/// `failures.jsonl` (slices that could not be read), the input's manifest lines of kept
/// slices, and contact sheets.
pub fn run(
    input: &Path,
    output: &Path,
    opts: &Options,
    hashing: &Hashing,
    progress: &dyn preprocess::Progress,
) -> Result<Report> {
    refuse_output_in_input(input, output)?;
    let (mut volumes, mut unreadable) = collect(input, &opts.pattern)?;
    if let Some(part) = opts.shard {
        if opts.scope == Scope::Global {
            let why =
                "a part (--shard) is reduced volume by volume: give --scope global to --merge";
            return Err(IoError::invalid(output, why).into());
        }
        volumes.retain(|volume, _| part.owns(volume));
        // Files no volume claims are the first part's to report.
        if part.index > 0 {
            unreadable.clear();
        }
    }
    if opts.scope == Scope::Global {
        let mut all: Vec<String> = std::mem::take(&mut volumes)
            .into_values()
            .flatten()
            .collect();
        all.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        volumes.insert("(all)".into(), all);
    }
    std::fs::create_dir_all(output).map_err(|e| IoError::io(output, e))?;
    let _lock = crate::io::lock::OutputLock::acquire(output)?;
    // A part is finished only once it says so, last: not while it is being redone.
    let finished = output.join(shard::FINISHED);
    if finished.exists() {
        std::fs::remove_file(&finished).map_err(|e| IoError::io(&finished, e))?;
    }
    progress.start(volumes.len());
    let mut report = Report {
        failures: unreadable.iter().map(Failure::from).collect(),
        ..Report::default()
    };
    for (index, (volume, slices)) in volumes.iter().enumerate() {
        let sheet = index < opts.sheets;
        // The paper's rule needs only hashes: without a contact sheet, each slice is hashed
        // as it decodes, and no image of the volume is held.
        let (records, images) = if matches!(opts.strategy, Strategy::Hash { .. }) && !sheet {
            let files: Vec<PathBuf> = slices.iter().map(|rel| input.join(rel)).collect();
            let hashed = hashing.hash_files(&files)?;
            let (paths, hashes) = readable(input, slices, hashed, &mut report.failures);
            let records = records(volume, &paths, &opts.strategy, &[], Some(hashes), None);
            (records, Vec::new())
        } else {
            let loaded: Vec<Result<Luma8, HashError>> = slices
                .par_iter()
                .map(|rel| hash::open_luma(&input.join(rel)))
                .collect();
            let (paths, images) = readable(input, slices, loaded, &mut report.failures);
            let refs: Vec<&Luma8> = images.iter().collect();
            let records = select_group(volume, &paths, &refs, &opts.strategy, hashing)?;
            (records, images)
        };
        for record in records.iter().filter(|r| r.kept) {
            place(
                &input.join(&record.path),
                &output.join(&record.path),
                opts.link,
            )?;
        }
        if sheet {
            let refs: Vec<&Luma8> = images.iter().collect();
            sheet::write(output, volume, &refs, &records)?;
        }
        progress.volume_done(volume, records.len());
        report.records.extend(records);
    }
    // In file order, as a merge of parts lists them too.
    report.failures.sort();
    write_outputs(input, output, &report)?;
    if let Some(part) = opts.shard {
        shard::write_finished(output, part, input, &opts.strategy)?;
    }
    Ok(report)
}

/// The order `run` lists a folder's records in: volumes by name, slices by path bytes.
pub(super) fn listing_order(a: &Record, b: &Record) -> std::cmp::Ordering {
    (a.volume.as_str(), a.path.as_bytes()).cmp(&(b.volume.as_str(), b.path.as_bytes()))
}

/// `reduction.jsonl`, `failures.jsonl`, and the input manifest's lines of the kept slices.
pub(super) fn write_outputs(input: &Path, output: &Path, report: &Report) -> Result<()> {
    crate::io::jsonl::write_all(&output.join("reduction.jsonl"), &report.records)?;
    crate::io::jsonl::write_all(&output.join("failures.jsonl"), &report.failures)?;
    // The input manifest's lines of the kept slices, as they were and in their order.
    if let Some(lines) = manifest_lines(input)? {
        let kept: std::collections::HashSet<&str> = report
            .records
            .iter()
            .filter(|r| r.kept)
            .map(|r| r.path.as_str())
            .collect();
        let text: String = lines
            .iter()
            .filter(|l| kept.contains(l.path.as_str()))
            .map(|l| format!("{}\n", l.text))
            .collect();
        let path = output.join("manifest.jsonl");
        crate::io::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

/// The slices (paths relative to `input`) whose reading succeeded, with what it gave; each
/// failure goes to `failures`, naming its file.
fn readable<T>(
    input: &Path,
    slices: &[String],
    results: Vec<std::result::Result<T, HashError>>,
    failures: &mut Vec<Failure>,
) -> (Vec<String>, Vec<T>) {
    let mut paths = Vec::new();
    let mut values = Vec::new();
    for (rel, result) in slices.iter().zip(results) {
        match result {
            Ok(value) => {
                paths.push(rel.clone());
                values.push(value);
            }
            Err(e) => failures.push(Failure {
                input: input.join(rel),
                error: e.to_string(),
                skipped: false,
            }),
        }
    }
    (paths, values)
}

/// Kept slices are copied over any file at their place in `output`: never let that be the
/// input itself, nor a folder the next run would read as input.
pub(super) fn refuse_output_in_input(input: &Path, output: &Path) -> Result<(), IoError> {
    let input = input.canonicalize().map_err(|e| IoError::io(input, e))?;
    let mut nearest = output.to_path_buf();
    let mut below = Vec::new();
    while !nearest.exists() {
        match (nearest.file_name(), nearest.parent()) {
            (Some(name), Some(parent)) => {
                below.push(name.to_owned());
                nearest = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => break,
        }
    }
    let mut resolved = nearest
        .canonicalize()
        .map_err(|e| IoError::io(&nearest, e))?;
    resolved.extend(below.iter().rev());
    if resolved.starts_with(&input) {
        return Err(IoError::invalid(
            output,
            format!(
                "the output lies in the input folder {}: choose a folder outside it",
                input.display()
            ),
        ));
    }
    Ok(())
}

/// Decisions for one group of slices, as records. Its errors are the device's (hashing,
/// embedding), never a slice's: the slices are already read.
fn select_group(
    volume: &str,
    paths: &[String],
    images: &[&Luma8],
    strategy: &Strategy,
    hashing: &Hashing,
) -> Result<Vec<Record>> {
    let hashes = match strategy {
        Strategy::Hash { kind, .. } => {
            if hashing.kind() != *kind {
                return Err(Error::InvalidArgument {
                    op: "reduce",
                    why: format!(
                        "hashing set up for {:?}, reducing with {kind:?}",
                        hashing.kind()
                    ),
                });
            }
            Some(hashing.hash(images)?)
        }
        _ => None,
    };
    let features = match strategy {
        Strategy::Embedding { embedder, .. } => Some(embedder.0.embed(images)?),
        _ => None,
    };
    Ok(records(volume, paths, strategy, images, hashes, features))
}

/// The decisions for the slices `paths` of `volume`, from what the strategy needs (images,
/// hashes or features), as records.
pub(super) fn records(
    volume: &str,
    paths: &[String],
    strategy: &Strategy,
    images: &[&Luma8],
    hashes: Option<Vec<Hash>>,
    features: Option<Vec<Vec<f32>>>,
) -> Vec<Record> {
    let decisions = decide(
        strategy,
        paths.len(),
        images,
        hashes.as_deref(),
        features.as_deref(),
        volume,
    );
    decisions
        .iter()
        .enumerate()
        .map(|(i, d)| Record {
            path: paths[i].clone(),
            volume: volume.to_string(),
            hash: hashes.as_ref().map(|h| h[i].to_string()),
            kept: d.kept,
            exemplar: d.exemplar.map(|e| paths[e].clone()),
            distance: d.distance,
            similarity: d.similarity,
        })
        .collect()
}

/// Copies (or hard-links) a kept slice to its place in the output, never over the input.
pub(super) fn place(from: &Path, to: &Path, link: bool) -> Result<(), IoError> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| IoError::io(dir, e))?;
    }
    if to.exists() {
        std::fs::remove_file(to).map_err(|e| IoError::io(to, e))?;
    }
    if link {
        return std::fs::hard_link(from, to).map_err(|e| {
            IoError::invalid(
                to,
                format!(
                    "cannot hard-link {}: {e} (drop --link to copy)",
                    from.display()
                ),
            )
        });
    }
    crate::io::copy_atomic(from, to)
}

/// Preprocesses `inputs` in memory and reduces each volume's slices as they are made, writing
/// only the kept slices (with `manifest.jsonl`) and `reduction.jsonl` to `opts.output`: the
/// same result as `preprocess::run`, then [`run`] on its output (scope `Volume`).
pub fn run_from_volumes(
    inputs: &[PathBuf],
    opts: &preprocess::Options,
    strategy: &Strategy,
    hashing: &Hashing,
    progress: &dyn preprocess::Progress,
) -> Result<(preprocess::Report, Report)> {
    let sink = ReduceSink {
        strategy,
        hashing,
        records: std::sync::Mutex::default(),
    };
    let made = preprocess::run_with(inputs, opts, progress, &sink)?;
    let mut records = sink
        .records
        .into_inner()
        .expect("no panic while holding the lock");
    records.sort_by(listing_order);
    crate::io::jsonl::write_all(&opts.output.join("reduction.jsonl"), &records)?;
    Ok((
        made,
        Report {
            records,
            failures: Vec::new(),
        },
    ))
}

/// Reduces each volume's slices in memory as preprocessing makes them, and writes only the
/// kept ones.
struct ReduceSink<'a> {
    strategy: &'a Strategy,
    hashing: &'a Hashing,
    records: std::sync::Mutex<Vec<Record>>,
}

impl Sink for ReduceSink<'_> {
    fn volume(&self, slices: Vec<Made>, opts: &preprocess::Options) -> Result<Written> {
        let (order, records) = opts.clock.time(preprocess::Stage::Hash, || {
            // Decide in the order `reduce` sees on disk (path bytes); write the manifest in the
            // order preprocessing made the slices, as `reduce` keeps its input manifest's order.
            let mut order: Vec<usize> = (0..slices.len()).collect();
            order.sort_by(|&a, &b| {
                slices[a]
                    .record
                    .path
                    .as_bytes()
                    .cmp(slices[b].record.path.as_bytes())
            });
            // What imagehash would read back from each PNG: 16-bit slices clip to 8 bits.
            let images: Vec<Luma8> = order
                .iter()
                .map(|&i| &slices[i])
                .map(|m| Luma8 {
                    width: m.width,
                    height: m.height,
                    pixels: match &m.pixels {
                        preprocess::Pixels::Gray8(p) => p.clone(),
                        preprocess::Pixels::Gray16(p) => {
                            p.iter().map(|&v| v.min(255) as u8).collect()
                        }
                    },
                })
                .collect();
            let refs: Vec<&Luma8> = images.iter().collect();
            let paths: Vec<String> = order
                .iter()
                .map(|&i| slices[i].record.path.clone())
                .collect();
            let volume = slices
                .first()
                .map_or(String::new(), |m| m.record.volume.clone());
            let records = select_group(&volume, &paths, &refs, self.strategy, self.hashing)?;
            Ok::<_, crate::Error>((order, records))
        })?;
        let mut kept = vec![false; slices.len()];
        for (&i, record) in order.iter().zip(&records) {
            kept[i] = record.kept;
        }
        let kept: Vec<Made> = slices
            .into_iter()
            .zip(kept)
            .filter_map(|(made, kept)| kept.then_some(made))
            .collect();
        let done = preprocess::write_slices(kept, opts)?;
        self.records.lock().unwrap().extend(records);
        Ok(done)
    }
}
