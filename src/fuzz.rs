//! The entry points of the fuzz targets (`fuzz/`, `cargo +nightly fuzz`), one per kind of
//! file a user hands lim, here so that every crash input the fuzzers found is replayed by
//! `make test` as well (`tests/hostile.rs`). Each writes the bytes where a command would find
//! them and runs the command's own path on them. A panic is the bug: a bad file must come
//! back as a failure that names it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::eval::dataset::{Dataset, Transform};
use crate::hash::{Algorithm, HashKind};
use crate::preprocess::{Made, Mode, NoProgress, Options, Sink, Written};

/// The voxel limit while fuzzing: 2^18 (a 512 x 512 slice, a 64³ volume), which keeps each
/// execution fast; larger claims meet the same check.
pub const FUZZ_MAX_VOXELS: u64 = 1 << 18;

/// NIfTI-1/2 through `lim preprocess`: as one file (plain, or gzip when the bytes start with
/// its magic), gzipped here (so that mutations reach the header under gzip too), or as a
/// `.hdr`/`.img` pair.
pub fn nifti(data: &[u8]) {
    let paper = data.len() / 3 % 2 == 1;
    match data.len() % 3 {
        0 => preprocess(&[("x.nii", data)], paper),
        1 => preprocess(&[("x.nii.gz", &gzip(data))], paper),
        _ => {
            let image = &data[data.len().min(352)..];
            preprocess(&[("x.hdr", data), ("x.img", image)], paper);
        }
    }
}

/// NRRD through `lim preprocess`: attached data (raw or gzip, as the header says), or a
/// detached header whose data file `d.raw` holds the same bytes.
pub fn nrrd(data: &[u8]) {
    let paper = data.len() / 2 % 2 == 1;
    if data.len().is_multiple_of(2) {
        preprocess(&[("x.nrrd", data)], paper);
    } else {
        preprocess(&[("x.nhdr", data), ("d.raw", data)], paper);
    }
}

/// DICOM through `lim preprocess`: the header scan, series grouping, pixel decoding (every
/// transfer syntax lim decodes, multi-frame), ordering and slicing; as one file, or as two
/// copies that group into one series.
pub fn dicom(data: &[u8]) {
    let paper = data.len() / 2 % 2 == 1;
    if data.len().is_multiple_of(2) {
        preprocess(&[("x.dcm", data)], paper);
    } else {
        preprocess(&[("a.dcm", data), ("b.dcm", data)], paper);
    }
}

/// The image decoders behind `lim hash`, `lim reduce`, `lim embed`, `lim evaluate` and the
/// training data loader (PNG and JPEG, by content): the slice list's header check, the decode
/// to grey, and every hash of the decoded image.
pub fn image(data: &[u8]) {
    let dir = inputs(&[("x.png", data)]);
    let path = dir.join("x.png");
    let _ = crate::data::find_slices(std::slice::from_ref(&dir)).map(|list| list.checked());
    // Decoded once: `hash::open_luma` and `GreyImage::open` are this decode and a conversion.
    if let Ok(image) = crate::data::decode_image(&path) {
        let luma = crate::hash::pillow::to_luma8(&image);
        for algorithm in [Algorithm::Dhash, Algorithm::Ahash, Algorithm::Phash] {
            let kind = HashKind::new(algorithm, 8).expect("a valid kind");
            crate::hash::hash_luma(&luma, kind);
        }
        crate::data::GreyImage::from_image(image);
    }
}

/// Checkpoints as `lim pretrain --resume`, `lim evaluate --weights` and `lim export` read
/// them: safetensors, or `torch.save`'s zip (`.pt`, Lightning `.ckpt`) by its magic; and
/// the bytes as a pickle.
pub fn checkpoint(data: &[u8]) {
    let dir = inputs(&[("x.safetensors", data)]);
    let _ = crate::nn::Checkpoint::read(&dir.join("x.safetensors"));
    let _ = crate::io::pickle::parse(data);
}

/// MedMNIST `.npz` archives as `lim evaluate` reads them (the zip, each `.npy` member, the
/// splits and labels, a few samples' pixels), and the bytes as a bare `.npy`.
pub fn npz(data: &[u8]) {
    let _ = crate::io::npy::parse_npy(data);
    let dir = inputs(&[("x.npz", data)]);
    if let Ok(dataset) = Dataset::open(&dir.join("x.npz"), 0) {
        let t = Transform {
            channels: 3,
            size: 8,
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
        };
        for name in ["train", "val", "test"] {
            for sample in dataset.split(name).iter().take(2) {
                let _ = sample.load(&t);
            }
        }
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, for the fuzz crate's and the regression test's use.
pub const TARGETS: [(&str, Target); 6] = [
    ("nifti", nifti),
    ("nrrd", nrrd),
    ("dicom", dicom),
    ("image", image),
    ("checkpoint", checkpoint),
    ("npz", npz),
];

/// This process's folder under `/dev/shm` (memory, where there is one), emptied for each
/// input.
fn scratch() -> PathBuf {
    crate::io::limits::set_max_voxels(FUZZ_MAX_VOXELS);
    contain_dependency_panics();
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        base.join(format!("lim-fuzz-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("in")).expect("a scratch folder");
    dir.clone()
}

/// Lets a panic raised in a dependency's code unwind, printed but not fatal, so that where lim
/// catches it (the DICOM pixel decoders) it becomes the file's failure, as in a user's run.
/// Every other panic still goes to the fuzzer's hook, which aborts; and one lim does not
/// catch reaches libfuzzer-sys's own `catch_unwind`, which aborts too.
fn contain_dependency_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_dependency = info
                .location()
                .is_some_and(|l| l.file().contains("/.cargo/registry/"));
            if in_dependency {
                eprintln!("a dependency panicked (lim catches it): {info}");
            } else {
                fuzzer(info);
            }
        }));
    });
}

/// Writes `files` (name, bytes) into a fresh scratch `in` folder and returns it.
fn inputs(files: &[(&str, &[u8])]) -> PathBuf {
    let dir = scratch().join("in");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("a scratch file");
    }
    dir
}

/// Slices made and dropped: all of `lim preprocess` but the PNG encoder.
struct Discard;

impl Sink for Discard {
    fn volume(&self, slices: Vec<Made>, _: &Options) -> crate::Result<Written> {
        Ok(Written {
            records: slices.into_iter().map(|m| m.record).collect(),
            written: 0,
            existing: 0,
        })
    }
}

/// `lim preprocess` (default or paper mode) on `files`: discovery, reading, series grouping,
/// slicing, intensity mapping, naming. A bad file must be a failure in the report, never an
/// error of the run, nor a panic (which `run_with` would turn into an "internal error").
fn preprocess(files: &[(&str, &[u8])], paper: bool) {
    let input = inputs(files);
    let mut opts = Options::new(input.with_file_name("out"));
    opts.mode = if paper { Mode::Paper } else { Mode::Default };
    match crate::preprocess::run_with(&[input], &opts, &NoProgress, &Discard) {
        Ok(report) => {
            if let Some(f) = report
                .failures
                .iter()
                .find(|f| f.error.contains("internal error"))
            {
                panic!("{}", f.error);
            }
        }
        Err(e) => panic!("a bad input stopped the run instead of failing alone: {e}"),
    }
}

/// `bytes` gzipped, as `.nii.gz` and NRRD's gzip encoding hold them.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("in memory");
    z.finish().expect("in memory")
}
