//! Which slices there are and which volume each belongs to: from a slice folder's
//! `manifest.jsonl` where `lim preprocess` wrote one, else from the file names.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use regex::Regex;

use crate::io::IoError;

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

/// The file-name patterns of the built-in volume patterns, compiled once (a folder of a
/// million slices asks a million times).
struct Names {
    lidc: Regex,
    petct: Regex,
    slice_suffix: Regex,
    number_suffix: Regex,
}

static NAMES: std::sync::LazyLock<Names> = std::sync::LazyLock::new(|| {
    let re = |pattern: &str| Regex::new(pattern).expect("a valid pattern");
    Names {
        lidc: re(r"^(.+)_\d+$"),
        petct: re(r"^(.+_\d+)_\d+$"),
        slice_suffix: re(r"^(.+?)[_-]slice[_-]?\d+$"),
        number_suffix: re(r"^(.*?)[_-]?\d+$"),
    }
});

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
        let before = |re: &Regex| re.captures(stem).map(|c| c[1].to_string());
        match self {
            VolumePattern::Dir => {
                if folder.is_empty() {
                    ".".into()
                } else {
                    folder.into()
                }
            }
            VolumePattern::Lidc => in_folder(&before(&NAMES.lidc).unwrap_or_else(|| stem.into())),
            VolumePattern::Petct => in_folder(&before(&NAMES.petct).unwrap_or_else(|| stem.into())),
            VolumePattern::Auto => {
                match before(&NAMES.slice_suffix).or_else(|| before(&NAMES.number_suffix)) {
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

/// Slices (relative paths) by volume.
pub type Volumes = BTreeMap<String, Vec<String>>;

/// The slices of `input` by volume, sorted (volumes by name, slices by path bytes): from
/// `input/manifest.jsonl` where it exists, else from the file names and `pattern`; and what
/// the walk could not read.
pub fn collect(input: &Path, pattern: &VolumePattern) -> Result<(Volumes, Vec<IoError>), IoError> {
    let mut volumes = Volumes::new();
    let mut unreadable = Vec::new();
    match manifest_lines(input)? {
        Some(lines) => {
            for line in lines {
                volumes.entry(line.volume).or_default().push(line.path);
            }
        }
        None => {
            let walked = crate::io::walk(&[input.to_path_buf()])?;
            unreadable = walked.unreadable;
            for file in walked
                .files
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
    Ok((volumes, unreadable))
}

/// One line of a slice folder's `manifest.jsonl`.
pub(super) struct ManifestLine {
    pub path: String,
    pub volume: String,
    /// The line as it was.
    pub text: String,
}

/// The lines of `input/manifest.jsonl`, if there is one.
pub(super) fn manifest_lines(input: &Path) -> Result<Option<Vec<ManifestLine>>, IoError> {
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
