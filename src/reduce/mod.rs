//! Slice reduction: per volume, drop the slices too like one already kept. The paper's
//! method (reference/less-is-more.md §2.1) is `Strategy::Hash` with dHash and threshold 6:
//! take the first remaining slice (in byte-wise path order), keep it, drop every remaining
//! slice within Hamming distance 6 of it, repeat. The other strategies are the comparisons
//! the paper made; similarity of learnt embeddings joins them with the ResNet.

pub mod sheet;
pub mod similarity;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use regex::Regex;
use serde::Serialize;

use crate::hash::{self, Hash, HashError, HashKind, Hasher, Luma8};
use crate::io::IoError;
use crate::preprocess::{self, Made, Sink, Written};

/// How slices are judged alike.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Perceptual hashes within `threshold` bits of the exemplar's (the paper: dHash, 6).
    Hash { kind: HashKind, threshold: u32 },
    /// Keep every n-th slice.
    EveryN(usize),
    /// Keep a random `fraction` of each volume's slices.
    Random { fraction: f64, seed: u64 },
    /// SSIM to the exemplar at least `threshold`.
    Ssim { threshold: f64 },
    /// Normalised mutual information with the exemplar at least `threshold`.
    Mi { threshold: f64 },
    /// Cosine similarity of encoder features with the exemplar's at least `threshold` (the
    /// paper's "DeepNet" strategy).
    Embedding {
        threshold: f64,
        embedder: SharedEmbedder,
    },
}

/// Features of images from a network, for [`Strategy::Embedding`]; `lim::eval::encoder`
/// has one on a ResNet.
pub trait Embedder: Send + Sync {
    /// One feature vector per image, in order.
    fn embed(&self, images: &[&Luma8]) -> Result<Vec<Vec<f32>>, String>;
}

/// An [`Embedder`] shared by the strategies that use it; equal only to itself.
#[derive(Clone)]
pub struct SharedEmbedder(pub std::sync::Arc<dyn Embedder>);

impl std::fmt::Debug for SharedEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedEmbedder")
    }
}

impl PartialEq for SharedEmbedder {
    fn eq(&self, other: &SharedEmbedder) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The cosine similarity of two vectors (0 where one is zero).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

/// Which slices are compared with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Within each volume (the paper).
    Volume,
    /// Across all slices.
    Global,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "volume" => Ok(Scope::Volume),
            "global" => Ok(Scope::Global),
            _ => Err(format!("`{s}` is not a scope: use volume or global")),
        }
    }
}

/// How file names tell the volume a slice belongs to, when there is no manifest.
#[derive(Clone, Debug)]
pub enum VolumePattern {
    /// The folder, and the file stem without a trailing `_<number>` (or `-slice<number>`).
    Auto,
    /// The paper's LIDC names, `LIDC-IDRI-0001_17.png`: the patient.
    Lidc,
    /// The paper's PET-CT names, `PETCT_<id>_<study>_<slice>.png`: the study.
    Petct,
    /// One volume per folder.
    Dir,
    /// The first capture group of a regular expression on the file stem.
    Regex(Regex),
}

impl FromStr for VolumePattern {
    type Err = String;
    fn from_str(s: &str) -> Result<VolumePattern, String> {
        match s {
            "auto" => Ok(VolumePattern::Auto),
            "lidc" => Ok(VolumePattern::Lidc),
            "petct" => Ok(VolumePattern::Petct),
            "dir" => Ok(VolumePattern::Dir),
            _ => match s.strip_prefix("regex:") {
                Some(re) => Regex::new(re)
                    .map(VolumePattern::Regex)
                    .map_err(|e| format!("bad volume regex: {e}")),
                None => Err(format!(
                    "`{s}` is not a volume pattern: use auto, lidc, petct, dir or regex:<expression>"
                )),
            },
        }
    }
}

impl VolumePattern {
    /// The volume of a slice at `rel` (a relative path with `/` separators).
    pub fn volume_of(&self, rel: &str) -> String {
        let (folder, file) = rel.rsplit_once('/').unwrap_or(("", rel));
        let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
        let in_folder = |v: &str| {
            if folder.is_empty() {
                v.to_string()
            } else {
                format!("{folder}/{v}")
            }
        };
        let before = |re: &str| {
            Regex::new(re)
                .expect("a valid pattern")
                .captures(stem)
                .map(|c| c[1].to_string())
        };
        match self {
            VolumePattern::Dir => {
                if folder.is_empty() {
                    ".".into()
                } else {
                    folder.into()
                }
            }
            VolumePattern::Lidc => in_folder(&before(r"^(.+)_\d+$").unwrap_or_else(|| stem.into())),
            VolumePattern::Petct => {
                in_folder(&before(r"^(.+_\d+)_\d+$").unwrap_or_else(|| stem.into()))
            }
            VolumePattern::Auto => {
                match before(r"^(.+?)[_-]slice[_-]?\d+$").or_else(|| before(r"^(.*?)[_-]?\d+$")) {
                    Some(v) if v.is_empty() => {
                        if folder.is_empty() {
                            ".".into()
                        } else {
                            folder.into()
                        }
                    }
                    Some(v) => in_folder(&v),
                    None => in_folder(stem),
                }
            }
            VolumePattern::Regex(re) => in_folder(
                re.captures(stem)
                    .and_then(|c| c.get(1))
                    .map_or(stem, |m| m.as_str()),
            ),
        }
    }
}

/// What reduction decided for one slice.
#[derive(Clone, Debug, PartialEq, Serialize)]
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

    pub fn hash(&self, images: &[&Luma8]) -> Result<Vec<Hash>, HashError> {
        match self {
            Hashing::Cpu(kind) => Ok(images
                .par_iter()
                .map(|i| hash::hash_luma(i, *kind))
                .collect()),
            Hashing::Gpu(hasher) => hasher.hash_images(images),
        }
    }
}

/// One decision: kept, or dropped (for an exemplar at some distance or similarity).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Decision {
    kept: bool,
    exemplar: Option<usize>,
    distance: Option<u32>,
    similarity: Option<f64>,
}

const KEPT: Decision = Decision {
    kept: true,
    exemplar: None,
    distance: None,
    similarity: None,
};

fn dropped_for(exemplar: usize) -> Decision {
    Decision {
        kept: false,
        exemplar: Some(exemplar),
        ..KEPT
    }
}

/// The exemplar rule: the first remaining slice is kept, and every remaining slice `alike`
/// it is dropped for it; repeat until none remain. `alike(exemplar, other)` gives whether
/// they are alike and the decision to record if so.
fn leader(n: usize, alike: impl Fn(usize, usize) -> Option<Decision> + Sync) -> Vec<Decision> {
    let mut decisions = vec![KEPT; n];
    let mut remaining: Vec<usize> = (0..n).collect();
    while let Some(&exemplar) = remaining.first() {
        let verdicts: Vec<Option<Decision>> = remaining[1..]
            .par_iter()
            .map(|&i| alike(exemplar, i))
            .collect();
        let mut next = Vec::with_capacity(remaining.len());
        for (&i, verdict) in remaining[1..].iter().zip(verdicts) {
            match verdict {
                Some(d) => decisions[i] = d,
                None => next.push(i),
            }
        }
        remaining = next;
    }
    decisions
}

/// Decides for one group of slices (in order) what `strategy` keeps.
fn decide(
    strategy: &Strategy,
    images: &[&Luma8],
    hashes: Option<&[Hash]>,
    features: Option<&[Vec<f32>]>,
    group: &str,
) -> Vec<Decision> {
    let n = images.len();
    match strategy {
        Strategy::Hash { threshold, .. } => {
            let hashes = hashes.expect("hashed before deciding");
            leader(n, |e, i| {
                let d = hashes[e].hamming(&hashes[i]);
                (d <= *threshold).then_some(Decision {
                    distance: Some(d),
                    ..dropped_for(e)
                })
            })
        }
        Strategy::Ssim { threshold } | Strategy::Mi { threshold } => {
            let thumbs: Vec<Luma8> = images
                .par_iter()
                .map(|i| similarity::thumbnail(i))
                .collect();
            let measure = if matches!(strategy, Strategy::Ssim { .. }) {
                similarity::ssim
            } else {
                similarity::nmi
            };
            leader(n, |e, i| {
                let s = measure(&thumbs[e], &thumbs[i]);
                (s >= *threshold).then_some(Decision {
                    similarity: Some(s),
                    ..dropped_for(e)
                })
            })
        }
        Strategy::Embedding { threshold, .. } => {
            let features = features.expect("embedded before deciding");
            leader(n, |e, i| {
                let s = cosine(&features[e], &features[i]);
                (s >= *threshold).then_some(Decision {
                    similarity: Some(s),
                    ..dropped_for(e)
                })
            })
        }
        Strategy::EveryN(step) => (0..n)
            .map(|i| {
                if i % step == 0 {
                    KEPT
                } else {
                    dropped_for(i - i % step)
                }
            })
            .collect(),
        Strategy::Random { fraction, seed } => {
            // Seeded by the group's name, so a volume draws the same slices however it is reached.
            let name = group.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed ^ name));
            let keep = (fraction.clamp(0.0, 1.0) * n as f64).round() as usize;
            let mut decisions = vec![KEPT; n];
            for &i in &order[keep..] {
                decisions[i] = Decision {
                    kept: false,
                    ..KEPT
                };
            }
            decisions
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
}

/// A slice that could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub input: PathBuf,
    pub error: String,
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

/// The slices of `input` by volume, sorted (volumes by name, slices by path bytes): from
/// `input/manifest.jsonl` where it exists, else from the file names and `pattern`.
pub fn collect(
    input: &Path,
    pattern: &VolumePattern,
) -> Result<BTreeMap<String, Vec<String>>, IoError> {
    let mut volumes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match manifest_lines(input)? {
        Some(lines) => {
            for line in lines {
                volumes.entry(line.volume).or_default().push(line.path);
            }
        }
        None => {
            let files = crate::io::walk(&[input.to_path_buf()])?;
            for file in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
            {
                let rel = file
                    .strip_prefix(input)
                    .expect("walked under input")
                    .to_string_lossy()
                    .replace('\\', "/");
                volumes
                    .entry(pattern.volume_of(&rel))
                    .or_default()
                    .push(rel);
            }
        }
    }
    for slices in volumes.values_mut() {
        slices.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    }
    Ok(volumes)
}

/// One line of a slice folder's `manifest.jsonl`.
struct ManifestLine {
    path: String,
    volume: String,
    text: String,
}

/// The lines of `input/manifest.jsonl`, if there is one.
fn manifest_lines(input: &Path) -> Result<Option<Vec<ManifestLine>>, IoError> {
    let manifest = input.join("manifest.jsonl");
    if !manifest.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&manifest).map_err(|e| IoError::io(&manifest, e))?;
    let mut lines = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| IoError::invalid(&manifest, format!("line {}: {e}", n + 1)))?;
        let (Some(path), Some(volume)) = (value["path"].as_str(), value["volume"].as_str()) else {
            return Err(IoError::invalid(
                &manifest,
                format!("line {} has no path and volume", n + 1),
            ));
        };
        lines.push(ManifestLine {
            path: path.to_string(),
            volume: volume.to_string(),
            text: line.to_string(),
        });
    }
    Ok(Some(lines))
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
) -> Result<Report, IoError> {
    refuse_output_in_input(input, output)?;
    let mut volumes = collect(input, &opts.pattern)?;
    if opts.scope == Scope::Global {
        let mut all: Vec<String> = std::mem::take(&mut volumes)
            .into_values()
            .flatten()
            .collect();
        all.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        volumes.insert("(all)".into(), all);
    }
    std::fs::create_dir_all(output).map_err(|e| IoError::io(output, e))?;
    progress.start(volumes.len());
    let mut report = Report::default();
    for (index, (volume, slices)) in volumes.iter().enumerate() {
        let loaded: Vec<Result<Luma8, HashError>> = slices
            .par_iter()
            .map(|rel| hash::open_luma(&input.join(rel)))
            .collect();
        let mut paths = Vec::new();
        let mut readable = Vec::new();
        for (rel, image) in slices.iter().zip(loaded) {
            match image {
                Ok(image) => {
                    paths.push(rel.clone());
                    readable.push(image);
                }
                Err(e) => report.failures.push(Failure {
                    input: input.join(rel),
                    error: e.to_string(),
                }),
            }
        }
        let images: Vec<&Luma8> = readable.iter().collect();
        let records = reduce_group(volume, &paths, &images, &opts.strategy, hashing)?;
        for record in records.iter().filter(|r| r.kept) {
            place(
                &input.join(&record.path),
                &output.join(&record.path),
                opts.link,
            )?;
        }
        if index < opts.sheets {
            sheet::write(output, volume, &images, &records)?;
        }
        progress.volume_done(volume, records.len());
        report.records.extend(records);
    }
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
    Ok(report)
}

/// Kept slices are copied over any file at their place in `output`: never let that be the
/// input itself, nor a folder the next run would read as input.
fn refuse_output_in_input(input: &Path, output: &Path) -> Result<(), IoError> {
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

/// Decisions for one group of slices, as records.
fn reduce_group(
    volume: &str,
    paths: &[String],
    images: &[&Luma8],
    strategy: &Strategy,
    hashing: &Hashing,
) -> Result<Vec<Record>, IoError> {
    let hashes = match strategy {
        Strategy::Hash { kind, .. } => {
            if hashing.kind() != *kind {
                return Err(IoError::invalid(
                    Path::new(volume),
                    format!(
                        "hashing set up for {:?}, reducing with {kind:?}",
                        hashing.kind()
                    ),
                ));
            }
            Some(
                hashing
                    .hash(images)
                    .map_err(|e| IoError::invalid(Path::new(volume), e.to_string()))?,
            )
        }
        _ => None,
    };
    let features = match strategy {
        Strategy::Embedding { embedder, .. } => Some(
            embedder
                .0
                .embed(images)
                .map_err(|e| IoError::invalid(Path::new(volume), e))?,
        ),
        _ => None,
    };
    let decisions = decide(
        strategy,
        images,
        hashes.as_deref(),
        features.as_deref(),
        volume,
    );
    Ok(decisions
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
        .collect())
}

/// Copies (or hard-links) a kept slice to its place in the output, never over the input.
fn place(from: &Path, to: &Path, link: bool) -> Result<(), IoError> {
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
) -> Result<(preprocess::Report, Report), IoError> {
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
    // The order `run` lists a folder in: volumes by name, slices by path bytes.
    records.sort_by(|a, b| {
        (a.volume.as_str(), a.path.as_bytes()).cmp(&(b.volume.as_str(), b.path.as_bytes()))
    });
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
    fn volume(&self, slices: Vec<Made>, output: &Path) -> Result<Written, IoError> {
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
                    preprocess::Pixels::Gray16(p) => p.iter().map(|&v| v.min(255) as u8).collect(),
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
        let records = reduce_group(&volume, &paths, &refs, self.strategy, self.hashing)?;
        let mut kept = vec![false; slices.len()];
        for (&i, record) in order.iter().zip(&records) {
            kept[i] = record.kept;
        }
        let mut done = Written {
            records: Vec::new(),
            written: 0,
            existing: 0,
        };
        for (made, kept) in slices.into_iter().zip(kept) {
            if kept {
                if preprocess::write_slice(&made, output)? {
                    done.written += 1;
                } else {
                    done.existing += 1;
                }
                done.records.push(made.record);
            }
        }
        self.records.lock().unwrap().extend(records);
        Ok(done)
    }
}
