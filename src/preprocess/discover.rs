//! Finding the volumes among the inputs (NIfTI and NRRD files, DICOM files grouped into
//! series) and naming them and their slices: folders per volume by default, the paper's
//! PET-CT and LIDC file names in paper mode.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Mode;
use crate::io::dicom::{self, Series};
use crate::io::names::safe_name;
use crate::io::{self, Failure, IoError, Kind, Volume};

/// A source of one volume, and how its slices are named.
pub(super) struct Job {
    pub source: Source,
    pub id: String,
    pub naming: Naming,
}

pub(super) enum Source {
    File(PathBuf),
    Series(Series),
}

pub(super) enum Naming {
    /// `{id}/{slice:04}.png`
    Folder,
    /// `{patient}_{study}_{slice}.png` (the paper's PET-CT script)
    Study { patient: String, study: usize },
    /// `{patient}_{n}.png` with `n` counting frames over all series, from `first` (the paper's
    /// LIDC script); a file that cannot be read leaves its numbers unused.
    Counter { patient: String, first: usize },
}

/// A volume file's name without its extensions.
fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("volume");
    let lower = name.to_ascii_lowercase();
    let cut = [
        ".nii.gz", ".hdr.gz", ".nii", ".hdr", ".nrrd", ".nhdr", ".dcm", ".dicom",
    ]
    .iter()
    .find(|ext| lower.ends_with(*ext))
    .map_or(name.len(), |ext| name.len() - ext.len());
    safe_name(&name[..cut])
}

fn parent_name(path: &Path) -> Option<String> {
    path.parent()?.file_name()?.to_str().map(safe_name)
}

/// The patient folder of the paper's LIDC layout, `<patient>/<study>/<series>/<file>`, as its
/// script names slices: the folder three levels above `file`, when that is the input folder
/// holding the file or lies inside it. None in another layout.
fn lidc_patient_folder(file: &Path, inputs: &[PathBuf]) -> Option<String> {
    let root = inputs
        .iter()
        .filter(|root| file != *root && file.starts_with(root))
        .max_by_key(|root| root.components().count())?;
    let folders: Vec<_> = file.strip_prefix(root).ok()?.parent()?.iter().collect();
    let patient = match folders.len() {
        0 | 1 => return None,
        2 => std::fs::canonicalize(root)
            .ok()?
            .file_name()?
            .to_os_string(),
        n => folders[n - 3].to_os_string(),
    };
    Some(safe_name(&patient.to_string_lossy()))
}

/// The entries of `folder` that Python's `glob('*')` lists: all but hidden ones.
fn visible_entries(folder: &Path) -> usize {
    std::fs::read_dir(folder).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

/// Finds the volumes among `inputs` and names them.
pub(super) fn discover(
    inputs: &[PathBuf],
    mode: Mode,
) -> Result<(Vec<Job>, Vec<Failure>, usize), IoError> {
    let walked = io::walk(inputs)?;
    let files = walked.files;
    let explicit: HashSet<&PathBuf> = inputs.iter().filter(|p| p.is_file()).collect();
    let mut volume_files = Vec::new();
    let mut dicom_files = Vec::new();
    let mut failures: Vec<Failure> = walked.unreadable.iter().map(Failure::from).collect();
    let mut ignored = 0;
    for file in files {
        match io::kind_of(&file) {
            Kind::Nifti | Kind::Nrrd => volume_files.push(file),
            Kind::Dicom => dicom_files.push(file),
            Kind::NiftiData => {
                let header = ["hdr", "hdr.gz"].iter().any(|ext| {
                    let name = file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default();
                    let stem = name
                        .strip_suffix(".gz")
                        .unwrap_or(name)
                        .trim_end_matches(".img");
                    file.with_file_name(format!("{stem}.{ext}")).exists()
                });
                if !header {
                    failures.push(
                        IoError::invalid(&file, "NIfTI image data without its .hdr header").into(),
                    );
                }
            }
            Kind::Other if explicit.contains(&file) => {
                failures
                    .push(IoError::unsupported(&file, "not a NIfTI, DICOM or NRRD file").into());
            }
            Kind::Other => ignored += 1,
        }
    }
    let scanned: Vec<_> = dicom_files.par_iter().map(|f| dicom::scan(f)).collect();
    let mut headers = Vec::new();
    for result in scanned {
        match result {
            Ok(h) => headers.push(h),
            Err(e) => failures.push(e.into()),
        }
    }

    let mut jobs = Vec::new();
    for (n, file) in volume_files.into_iter().enumerate() {
        let id = file_stem(&file);
        // The paper's PET-CT layout is <patient>/<study>/CT.nii.gz.
        let patient = match id.as_str() {
            "CT" => file
                .parent()
                .and_then(parent_name)
                .unwrap_or_else(|| id.clone()),
            _ => id.clone(),
        };
        let naming = match mode {
            Mode::Default => Naming::Folder,
            Mode::Paper => Naming::Study {
                patient,
                study: n + 1,
            },
        };
        jobs.push(Job {
            source: Source::File(file),
            id,
            naming,
        });
    }
    let mut counter = 0;
    for series in dicom::group(headers, mode == Mode::Paper) {
        let first = &series.files[0];
        let patient = series
            .patient_id
            .as_deref()
            .map(safe_name)
            .or_else(|| parent_name(first))
            .unwrap_or_else(|| "dicom".into());
        let id = match (&series.series_uid, &series.series_number) {
            (None, _) => file_stem(first),
            (Some(_), Some(number)) => format!("{patient}_{}", safe_name(number)),
            (Some(_), None) => patient.clone(),
        };
        // Paper mode's alone: finding the patient folder may resolve the input on disk.
        let lidc = (mode == Mode::Paper)
            .then(|| lidc_patient_folder(first, inputs))
            .flatten();
        let naming = match (mode, lidc) {
            (Mode::Default, _) => Naming::Folder,
            (Mode::Paper, Some(folder)) => {
                // The LIDC script converts a series folder only if it holds more than 10
                // files, which passes over the X-rays (CR, DX) among the CTs.
                let series_folder = first.parent().unwrap_or(first);
                let files = visible_entries(series_folder);
                if files <= 10 {
                    failures.push(Failure {
                        input: series_folder.to_path_buf(),
                        error: format!(
                            "{}: a series folder of {files} files; the paper's LIDC script \
                             converts only those of more than 10 (it passes over X-rays); skipped",
                            series_folder.display()
                        ),
                        skipped: true,
                    });
                    continue;
                }
                Naming::Counter {
                    patient: folder,
                    first: counter,
                }
            }
            (Mode::Paper, None) => Naming::Counter {
                patient,
                first: counter,
            },
        };
        counter += series.frames.iter().map(|&f| f as usize).sum::<usize>();
        jobs.push(Job {
            source: Source::Series(series),
            id,
            naming,
        });
    }
    // Volume ids name folders: make them unique, in job order.
    let mut seen = HashSet::new();
    for job in &mut jobs {
        let mut id = job.id.clone();
        let mut n = 1;
        while !seen.insert(id.clone()) {
            n += 1;
            id = format!("{}_{n}", job.id);
        }
        job.id = id;
    }
    Ok((jobs, failures, ignored))
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::File(p) => p,
            Source::Series(s) => &s.files[0],
        }
    }
}

/// The paper's global number of each slice of a series read in file-name order: `first`,
/// plus the frames of the files before the slice's file, plus its frame within the file.
pub(super) fn frame_numbers(first: usize, series: &Series, volume: &Volume) -> Vec<usize> {
    let before: Vec<usize> = series
        .frames
        .iter()
        .scan(first, |n, &f| {
            let start = *n;
            *n += f as usize;
            Some(start)
        })
        .collect();
    let files = volume
        .slice_sources
        .clone()
        .unwrap_or_else(|| vec![0; volume.dims[2]]);
    let mut seen = vec![0; series.files.len()];
    files
        .iter()
        .map(|&file| {
            seen[file] += 1;
            before[file] + seen[file] - 1
        })
        .collect()
}
