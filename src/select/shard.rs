//! An archive reduced in parts (`lim reduce --shard i/N`), on as many machines or tasks as it
//! takes, and the parts merged (`lim reduce --merge`) into what one run would have written.
//! A part is a whole number of volumes, so the paper's per-volume rule needs nothing from the
//! others; a merge with `--scope global` decides again over every part's hashes.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::collect::Scope;
use super::rule::Strategy;
use super::run::{
    Record, Report, listing_order, place, records, refuse_output_in_input, write_outputs,
};
use crate::Result;
use crate::hash::{Algorithm, Hash, HashKind};
use crate::io::{Failure, IoError};

/// Part `index` of `count`: the volumes whose name hashes (FNV-1a) to `index` modulo `count`,
/// whatever else the archive holds, so that a part can be rerun or retried on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn owns(&self, volume: &str) -> bool {
        crate::io::names::fnv1a(volume.as_bytes()) % self.count as u64 == self.index as u64
    }
}

impl FromStr for Shard {
    type Err = String;
    /// `i/N`, with `0 <= i < N`.
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(format!(
                "`{s}` is not a shard: give i/N with 0 <= i < N, e.g. 0/4"
            )),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Beside a part's outputs, written last: the part is finished, and what made it.
pub const FINISHED: &str = "shard.json";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Finished {
    shard: String,
    /// The slice folder the part was cut from (canonical).
    input: PathBuf,
    /// The rule, as `Debug` prints it: every part must have the same.
    rule: String,
    /// The hash rule, which `--scope global` applies again when merging.
    hash: Option<HashRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct HashRule {
    algorithm: String,
    size: usize,
    threshold: u32,
}

/// Marks `output` as part `shard` of `input` reduced by `strategy`.
pub(super) fn write_finished(
    output: &Path,
    shard: Shard,
    input: &Path,
    strategy: &Strategy,
) -> std::result::Result<(), IoError> {
    let finished = Finished {
        shard: shard.to_string(),
        input: input.canonicalize().map_err(|e| IoError::io(input, e))?,
        rule: format!("{strategy:?}"),
        hash: match strategy {
            Strategy::Hash { kind, threshold } => Some(HashRule {
                algorithm: kind.algorithm.to_string(),
                size: kind.size,
                threshold: *threshold,
            }),
            _ => None,
        },
    };
    let path = output.join(FINISHED);
    let text = serde_json::to_string_pretty(&finished).expect("serialisable");
    crate::io::write_atomic(&path, text.as_bytes())
}

fn read_finished(dir: &Path) -> std::result::Result<(Shard, Finished), IoError> {
    let path = dir.join(FINISHED);
    if !path.exists() {
        return Err(IoError::invalid(
            dir,
            format!(
                "not a finished part of `lim reduce --shard` (no {FINISHED}): run or rerun that part"
            ),
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| IoError::io(&path, e))?;
    let finished: Finished =
        serde_json::from_str(&text).map_err(|e| IoError::invalid(&path, e.to_string()))?;
    let shard = finished
        .shard
        .parse()
        .map_err(|e: String| IoError::invalid(&path, e))?;
    Ok((shard, finished))
}

/// Merges the finished parts `shards` of one reduction into `output`, as one run on the whole
/// input would have written it: per volume (the parts' own decisions) or, with
/// `Scope::Global`, the hash rule applied again across all of them. Kept slices are copied (or
/// hard-linked) from the parts, or for a global merge from the input folder, whose slices the
/// parts may not hold. Failures are listed in file order, as one run lists them.
pub fn merge(shards: &[PathBuf], output: &Path, scope: Scope, link: bool) -> Result<Report> {
    let Some(first_dir) = shards.first() else {
        return Err(IoError::invalid(output, "no parts to merge").into());
    };
    let parts = shards
        .iter()
        .map(|dir| read_finished(dir))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (first, model) = &parts[0];
    let mut seen = BTreeSet::new();
    for ((shard, finished), dir) in parts.iter().zip(shards) {
        let differs = if shard.count != first.count {
            Some(format!("a part of {} (not {})", shard.count, first.count))
        } else if finished.input != model.input {
            Some(format!(
                "cut from {} (not {})",
                finished.input.display(),
                model.input.display()
            ))
        } else if finished.rule != model.rule {
            Some(format!("reduced by {} (not {})", finished.rule, model.rule))
        } else {
            None
        };
        if let Some(why) = differs {
            let why = format!("{why}, unlike {}", first_dir.display());
            return Err(IoError::invalid(dir, why).into());
        }
        if !seen.insert(shard.index) {
            return Err(IoError::invalid(dir, format!("part {shard} is given twice")).into());
        }
        refuse_output_in_input(dir, output)?;
    }
    let missing: Vec<String> = (0..first.count)
        .filter(|i| !seen.contains(i))
        .map(|i| format!("{i}/{}", first.count))
        .collect();
    if !missing.is_empty() {
        let why = format!("parts {} are missing from the merge", missing.join(", "));
        return Err(IoError::invalid(output, why).into());
    }
    let input = &model.input;
    // The input may live on another machine; where it is here, nothing is written into it.
    if input.exists() {
        refuse_output_in_input(input, output)?;
    }
    std::fs::create_dir_all(output).map_err(|e| IoError::io(output, e))?;
    let _lock = crate::io::lock::OutputLock::acquire(output)?;

    let mut report = Report::default();
    // Each record's part, by index into `shards`.
    let mut sources = Vec::new();
    for (part, dir) in shards.iter().enumerate() {
        let records: Vec<Record> = crate::io::jsonl::read_all(&dir.join("reduction.jsonl"))?;
        sources.extend(std::iter::repeat_n(part, records.len()));
        report.records.extend(records);
        report
            .failures
            .extend(crate::io::jsonl::read_all::<Failure>(
                &dir.join("failures.jsonl"),
            )?);
    }
    report.failures.sort();
    match scope {
        Scope::Volume => {
            let mut placed: Vec<(Record, usize)> = report.records.drain(..).zip(sources).collect();
            placed.sort_by(|(a, _), (b, _)| listing_order(a, b));
            for (record, part) in placed.iter().filter(|(r, _)| r.kept) {
                let from = shards[*part].join(&record.path);
                place(&from, &output.join(&record.path), link)?;
            }
            report.records = placed.into_iter().map(|(r, _)| r).collect();
        }
        Scope::Global => {
            let Some(rule) = &model.hash else {
                let why = format!(
                    "--scope global merges by hashes, and the parts were reduced by {}",
                    model.rule
                );
                return Err(IoError::invalid(first_dir, why).into());
            };
            let strategy = Strategy::Hash {
                kind: HashKind::new(rule.algorithm.parse::<Algorithm>()?, rule.size)?,
                threshold: rule.threshold,
            };
            let mut all: Vec<(String, Hash)> = Vec::with_capacity(report.records.len());
            for (record, &part) in report.records.iter().zip(&sources) {
                let hash = record.hash.as_deref().unwrap_or_default().parse::<Hash>();
                let hash = hash.map_err(|e| {
                    IoError::invalid(
                        &shards[part].join("reduction.jsonl"),
                        format!("{}: {e}", record.path),
                    )
                })?;
                all.push((record.path.clone(), hash));
            }
            all.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let (paths, hashes): (Vec<String>, Vec<Hash>) = all.into_iter().unzip();
            report.records = records("(all)", &paths, &strategy, &[], Some(hashes), None);
            for record in report.records.iter().filter(|r| r.kept) {
                place(&input.join(&record.path), &output.join(&record.path), link)?;
            }
        }
    }
    write_outputs(input, output, &report)?;
    Ok(report)
}
