//! Finding the slices to train on: folders of PNG or JPEG slices at any depth, the output
//! folder of `lim reduce` (its kept slices), or text files listing one path a line.

use std::path::{Path, PathBuf};

use crate::io::{self, IoError};

/// An input path that is not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
}

/// The slices found, in a fixed order (sorted within each input, inputs in the order given),
/// and what was passed over.
#[derive(Clone, Debug, Default)]
pub struct SliceList {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
}

/// Whether `path` names a PNG or JPEG file, by its extension.
pub fn is_image(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(ext.as_str(), "png" | "jpg" | "jpeg")
}

/// The files lim itself writes beside slices (logs, manifests, the output lock), which are no
/// slices and not worth a word.
fn is_side_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".jsonl") || name.ends_with(".json") || name.starts_with('.')
}

/// The kept slices of a `lim reduce` output folder, from its `reduction.jsonl` (the folder
/// also holds contact sheets, which are images but no slices).
fn reduced(dir: &Path, log: &Path, out: &mut SliceList) -> Result<(), IoError> {
    let text = std::fs::read_to_string(log).map_err(|e| IoError::io(log, e))?;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| IoError::invalid(log, format!("line {}: {e}", n + 1)))?;
        let (Some(path), Some(kept)) = (record["path"].as_str(), record["kept"].as_bool()) else {
            return Err(IoError::invalid(
                log,
                format!("line {}: no `path` and `kept`", n + 1),
            ));
        };
        if kept {
            let file = dir.join(path);
            match file.is_file() {
                true => out.files.push(file),
                false => out.skipped.push(Skipped {
                    path: file,
                    why: "kept in reduction.jsonl but not in the folder".into(),
                }),
            }
        }
    }
    Ok(())
}

/// Paths listed one a line; relative ones are relative to the list's folder. Blank lines
/// and lines starting with `#` are passed over.
fn listed(list: &Path, out: &mut SliceList) -> Result<(), IoError> {
    let text = std::fs::read_to_string(list).map_err(|e| IoError::io(list, e))?;
    let base = list.parent().unwrap_or(Path::new(""));
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let file = base.join(line);
        let why = match (file.is_file(), is_image(&file)) {
            (true, true) => {
                out.files.push(file);
                continue;
            }
            (false, _) => format!("listed in {} but not found", list.display()),
            (true, false) => "not a PNG or JPEG file".into(),
        };
        out.skipped.push(Skipped { path: file, why });
    }
    Ok(())
}

/// The slices under `inputs`. A folder with a `reduction.jsonl` is read as `lim reduce`'s
/// output; other folders are searched recursively for PNG and JPEG files; a file that is no
/// image is read as a list of paths.
pub fn find_slices(inputs: &[PathBuf]) -> Result<SliceList, IoError> {
    let mut out = SliceList::default();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| IoError::io(input, e))?;
        if meta.is_dir() {
            let log = input.join("reduction.jsonl");
            if log.is_file() {
                reduced(input, &log, &mut out)?;
                continue;
            }
            let walked = io::walk(std::slice::from_ref(input))?;
            out.skipped
                .extend(walked.unreadable.iter().map(|e| Skipped {
                    path: e.path().to_path_buf(),
                    why: e.to_string(),
                }));
            for file in walked.files {
                if is_image(&file) {
                    out.files.push(file);
                } else if !is_side_file(&file) {
                    out.skipped.push(Skipped {
                        path: file,
                        why: "not a PNG or JPEG file".into(),
                    });
                }
            }
        } else if is_image(input) {
            out.files.push(input.clone());
        } else {
            listed(input, &mut out)?;
        }
    }
    Ok(out)
}

impl SliceList {
    /// Moves the files whose image header cannot be read (not an image, corrupt, empty)
    /// to `skipped`, reading only the headers, in parallel.
    pub fn checked(mut self) -> SliceList {
        use rayon::prelude::*;
        let verdicts: Vec<Option<String>> = self
            .files
            .par_iter()
            .map(|path| {
                if let Err(e) = crate::io::require_regular(path) {
                    return Some(e.to_string());
                }
                let reader = image::ImageReader::open(path)
                    .and_then(|r| r.with_guessed_format())
                    .map_err(|e| e.to_string());
                let limit = crate::io::limits::max_voxels();
                match reader.map(|r| r.into_dimensions()) {
                    Ok(Ok((w, h))) if w as u64 * h as u64 > limit => Some(format!(
                        "the image's header claims {w} x {h} pixels, past the limit of {limit} (--max-voxels)"
                    )),
                    Ok(Ok((w, h))) if w > 0 && h > 0 => None,
                    Ok(Ok(_)) => Some("the image is empty".into()),
                    Ok(Err(e)) => Some(format!("not a readable image: {e}")),
                    Err(e) => Some(e),
                }
            })
            .collect();
        let files = std::mem::take(&mut self.files);
        for (path, verdict) in files.into_iter().zip(verdicts) {
            match verdict {
                None => self.files.push(path),
                Some(why) => self.skipped.push(Skipped { path, why }),
            }
        }
        self
    }
}
