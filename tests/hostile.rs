//! Hostile and broken inputs through the whole command, under a memory limit: headers that
//! claim huge volumes, gzip streams that lie about their size or inflate past it, truncated
//! files. Each is a failure that names the file and what it claimed; the rest is processed.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A NIfTI-1 single file: a 352-byte header for `dims` of int16, then `data`.
fn nifti(dims: [i16; 3], data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (n, d) in [3, dims[0], dims[1], dims[2], 1, 1, 1, 1]
        .iter()
        .enumerate()
    {
        h[40 + 2 * n..42 + 2 * n].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_le_bytes());
    h[72..74].copy_from_slice(&16i16.to_le_bytes());
    h[76..80].copy_from_slice(&1f32.to_le_bytes());
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    [h, data.to_vec()].concat()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// A PNG whose header claims `width` x `height` grey pixels, over one empty row.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [
            (data.len() as u32).to_be_bytes().to_vec(),
            kind.to_vec(),
            data.to_vec(),
            crc.sum().to_be_bytes().to_vec(),
        ]
        .concat()
    };
    let ihdr = [
        width.to_be_bytes().as_slice(),
        &height.to_be_bytes(),
        &[8, 0, 0, 0, 0],
    ]
    .concat();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&[0u8; 1]).unwrap();
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        chunk(b"IDAT", &z.finish().unwrap()),
        chunk(b"IEND", &[]),
    ]
    .concat()
}

/// A DICOM file from the sample series claiming 65535 x 65535 pixels in a million frames.
fn dicom_claiming_a_petabyte(path: &Path) {
    use dicom_core::{PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::mem::InMemElement;
    let original = common::samples().join("dicom/lung1_series/IM0000.dcm");
    let mut obj = dicom_object::open_file(original).unwrap();
    obj.put(InMemElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(65535u16),
    ));
    obj.put(InMemElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(65535u16),
    ));
    obj.put(InMemElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1000000"),
    ));
    obj.write_to_file(path).unwrap();
}

/// Runs `lim args` with its address space limited to `kib` KiB (`ulimit -v`): an allocation
/// past it fails, which aborts a Rust program, so a run that ends normally allocated less.
fn lim_limited(kib: u64, args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_lim"))
        .args(args)
        .output()
        .unwrap()
}

/// Every crafted header below claims far more than the 1.5 GiB of address space `lim
/// preprocess` runs in (a terabyte and up, or a 4 GiB gzip trailer, which the reader used to
/// allocate); each is refused by its claim, named with the limit, or read no further than its
/// header describes. The real volume beside them is sliced as usual.
#[test]
fn crafted_headers_are_refused_within_a_memory_limit_and_the_rest_is_processed() {
    let dir = fresh_dir("claims");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(inputs.join(name), bytes).unwrap();

    let huge = nifti([30000, 30000, 30000], &[0; 64]);
    write("huge.nii", &huge);
    write("huge.nii.gz", &gzip(&huge));
    // A small volume whose gzip trailer claims 4 GiB - 1 inflated bytes.
    let mut lying = gzip(&nifti([8, 8, 8], &[1; 1024]));
    let at = lying.len() - 4;
    lying[at..].copy_from_slice(&u32::MAX.to_le_bytes());
    write("lying-trailer.nii.gz", &lying);
    // A 64-voxel header over 64 MiB of zeros: a bomb that inflates past its claim.
    write("bomb.nii.gz", &gzip(&nifti([4, 4, 4], &vec![0; 64 << 20])));
    let whole = gzip(&nifti([16, 16, 16], &[7; 8192]));
    write("truncated.nii.gz", &whole[..whole.len() / 2]);
    write(
        "huge.nrrd",
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\n\n\0\0",
    );
    let bomb = gzip(&vec![0; 64 << 20]);
    write(
        "bomb.nrrd",
        &[
            b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: gzip\n\n".as_slice(),
            &bomb,
        ]
        .concat(),
    );
    dicom_claiming_a_petabyte(&inputs.join("huge.dcm"));
    let real = common::samples().join("ct_volumes/ct_example.nii.gz");

    let out = dir.join("out");
    let run = lim_limited(
        1536 << 10,
        &[
            "preprocess".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
            inputs.as_os_str(),
            real.as_os_str(),
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let failures = common::failures_file(&out.join("failures.jsonl"));
    let error_of = |name: &str| {
        failures
            .iter()
            .find(|f| f.input.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is not among the failures: {failures:?}"))
            .error
            .clone()
    };
    for (name, claim) in [
        (
            "huge.nii",
            "image dimensions [30000, 30000, 30000] claim 27000000000000 voxels",
        ),
        (
            "huge.nii.gz",
            "image dimensions [30000, 30000, 30000] claim 27000000000000 voxels",
        ),
        (
            "huge.nrrd",
            "sizes [100000, 100000, 100000] claim 1000000000000000 voxels",
        ),
        (
            "huge.dcm",
            "Columns, Rows and NumberOfFrames [65535, 65535, 1000000] claim 4294836225000000 voxels",
        ),
    ] {
        let error = error_of(name);
        assert!(error.contains(name) && error.contains(claim), "{error}");
        assert!(
            error.contains("past the limit of 1073741824 (raise it with --max-voxels"),
            "{error}"
        );
    }
    // The header and 64 int16 voxels; the NRRD's data stream holds only the voxels.
    for (name, bytes) in [("bomb.nii.gz", 352 + 128), ("bomb.nrrd", 128)] {
        let error = error_of(name);
        let claim = format!("inflate past the {bytes} bytes the header describes");
        assert!(error.contains(&claim), "{error}");
    }
    for name in ["lying-trailer.nii.gz", "truncated.nii.gz"] {
        assert!(
            error_of(name).contains("corrupt or truncated gzip data"),
            "{}",
            error_of(name)
        );
    }
    assert_eq!(failures.len(), 8, "{failures:?}");
    let slices = walk_pngs(&out);
    assert!(
        slices
            .iter()
            .all(|p| p.to_string_lossy().contains("ct_example"))
    );
    assert!(slices.len() > 10, "the real volume is sliced: {slices:?}");

    // The limit is the user's: lowered, it refuses the real volume too, by its own numbers.
    let strict = dir.join("strict");
    let run = common::lim(&[
        "--max-voxels".as_ref(),
        "1000".as_ref(),
        "preprocess".as_ref(),
        "--output".as_ref(),
        strict.as_os_str(),
        real.as_os_str(),
    ]);
    let failures = common::failures_file(&strict.join("failures.jsonl"));
    assert!(
        failures.len() == 1 && failures[0].error.contains("past the limit of 1000"),
        "{:?} {failures:?}",
        run.status
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A PNG whose header claims 100000 x 100000 pixels is refused by `lim hash` before it is
/// decoded (10 GB of pixels), within the same memory limit, naming the file and the limit.
#[test]
fn an_image_claiming_ten_gigapixels_is_refused_before_decoding() {
    let dir = fresh_dir("png");
    let png = dir.join("huge.png");
    std::fs::write(&png, png_claiming(100_000, 100_000)).unwrap();
    let run = lim_limited(1536 << 10, &["hash".as_ref(), png.as_os_str()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("huge.png")
            && stderr.contains("[100000, 100000] claim 10000000000 voxels, past the limit"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn walk_pngs(dir: &Path) -> Vec<PathBuf> {
    lim::io::walk(&[dir.to_path_buf()])
        .unwrap()
        .files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect()
}

/// `lim preprocess` and `lim reduce` writing onto a disk that fills up stop with a message
/// that names the file and says what to do, leave no half-written file under a final name,
/// and, once space is freed, a rerun of the same command ends with exactly the files of a
/// run that never ran out of space.
#[test]
fn a_full_disk_stops_the_run_with_whole_files_only_and_a_rerun_completes() {
    let dir = fresh_dir("full-disk");
    let real = common::samples().join("ct_volumes/ct_example.nii.gz");
    let (slices, reduced) = (dir.join("slices"), dir.join("reduced"));
    let preprocess = |out: &Path| {
        common::lim(&[
            "preprocess".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
            real.as_os_str(),
        ])
    };
    let reduce = |out: &Path| {
        common::lim(&[
            "reduce".as_ref(),
            slices.as_os_str(),
            out.as_os_str(),
            "--sheets".as_ref(),
            "1".as_ref(),
        ])
    };
    assert!(preprocess(&slices).status.success());
    assert!(reduce(&reduced).status.success());

    // 26 slices of about 24 KiB each, onto 256 KiB.
    let disk = common::Tmpfs::mount(&dir.join("disk"), "256k");
    let out = disk.0.join("slices");
    common::assert_stopped_by_a_full_disk(&preprocess(&out), &out);
    disk.grow("64m");
    let rerun = preprocess(&out);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    common::assert_same_files(&slices, &out, "after the disk filled up");
    drop(disk);

    // 5 kept slices and a contact sheet, onto 64 KiB.
    let disk = common::Tmpfs::mount(&dir.join("disk2"), "64k");
    let out = disk.0.join("reduced");
    common::assert_stopped_by_a_full_disk(&reduce(&out), &out);
    disk.grow("64m");
    let rerun = reduce(&out);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    common::assert_same_files(&reduced, &out, "after the disk filled up");
    drop(disk);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs lim as the unprivileged user `nobody` (through `setpriv` when the test runs as root,
/// as CI does: root reads every file), from a copy of the binary that user may run.
fn lim_unprivileged(dir: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("lim");
    if !bin.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_lim"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    command.args(args).env("HOME", dir).output().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Files and folders the user may not read, among the inputs of `lim preprocess`, `lim hash`
/// and `lim reduce`, are failures that name them (a DICOM file without an extension too: it
/// used to be passed over as no image); the rest is processed.
#[test]
fn unreadable_files_and_folders_are_named_failures_and_the_rest_is_processed() {
    let dir = fresh_dir("permissions");
    chmod(&dir, 0o777);
    let series = common::samples().join("dicom/lung1_series");
    let inputs = dir.join("in");
    std::fs::create_dir_all(inputs.join("locked")).unwrap();
    for (from, to, mode) in [
        ("IM0000.dcm", "IM0000.dcm", 0o644),
        ("IM0001.dcm", "secret.dcm", 0o600),
        ("IM0002.dcm", "noextension", 0o600),
        ("IM0003.dcm", "locked/IM0003.dcm", 0o644),
    ] {
        std::fs::copy(series.join(from), inputs.join(to)).unwrap();
        chmod(&inputs.join(to), mode);
    }
    chmod(&inputs.join("locked"), 0o700);
    let named = |failures: &[lim::io::Failure], names: &[&str]| {
        for name in names {
            assert!(
                failures.iter().any(|f| f.input.ends_with(name)
                    && f.error.contains(name)
                    && f.error.contains("Permission denied")),
                "{name}: {failures:?}"
            );
        }
    };

    let out = dir.join("slices");
    let run = lim_unprivileged(
        &dir,
        &[
            "preprocess".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
            inputs.as_os_str(),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let failures = common::failures_file(&out.join("failures.jsonl"));
    named(&failures, &["secret.dcm", "noextension", "locked"]);
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert_eq!(walk_pngs(&out).len(), 1, "the readable file is sliced");

    // Slices: one unreadable, one in a folder that cannot be listed.
    let slices = dir.join("ct");
    let real = common::samples().join("ct_volumes/ct_example.nii.gz");
    assert!(
        common::lim(&[
            "preprocess".as_ref(),
            "--output".as_ref(),
            slices.as_os_str(),
            real.as_os_str()
        ])
        .status
        .success()
    );
    let volume = slices.join("ct_example");
    chmod(&volume.join("0003.png"), 0o600);
    std::fs::create_dir_all(volume.join("locked")).unwrap();
    std::fs::copy(volume.join("0004.png"), volume.join("locked/0004.png")).unwrap();
    chmod(&volume.join("locked"), 0o700);

    let hashed = lim_unprivileged(&dir, &["hash".as_ref(), volume.as_os_str()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&hashed.stdout),
        String::from_utf8_lossy(&hashed.stderr),
    );
    assert_eq!(
        stdout.lines().count(),
        25,
        "every readable slice is hashed: {stdout}"
    );
    for name in ["0003.png", "locked"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(name) && l.contains("Permission denied")),
            "{name}: {stderr}"
        );
    }

    // Without its manifest, reduce walks the folder.
    std::fs::remove_file(slices.join("manifest.jsonl")).unwrap();
    let reduced = dir.join("reduced");
    let run = lim_unprivileged(
        &dir,
        &["reduce".as_ref(), slices.as_os_str(), reduced.as_os_str()],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let failures = common::failures_file(&reduced.join("failures.jsonl"));
    named(&failures, &["0003.png", "locked"]);
    assert_eq!(failures.len(), 2, "{failures:?}");
    chmod(&volume.join("locked"), 0o755);
    chmod(&inputs.join("locked"), 0o755);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A volume's file that vanishes after the inputs were listed, before it is read (a NIfTI
/// file, and one file of a DICOM series), is a failure that names it; the rest is processed.
#[test]
fn a_file_that_vanishes_mid_run_is_a_named_failure() {
    use lim::preprocess::{Made, NoProgress, Options, Sink, Written};
    /// Writes nothing; when handed the first volume, deletes `victims`.
    struct Deleting(Vec<PathBuf>);
    impl Sink for Deleting {
        fn volume(&self, slices: Vec<Made>, _: &Options) -> lim::Result<Written> {
            for victim in &self.0 {
                let _ = std::fs::remove_file(victim);
            }
            Ok(Written {
                records: slices.into_iter().map(|m| m.record).collect(),
                written: 0,
                existing: 0,
            })
        }
    }
    let dir = fresh_dir("vanish");
    let inputs = dir.join("in");
    std::fs::create_dir_all(inputs.join("series")).unwrap();
    let real = common::samples().join("ct_volumes/ct_example.nii.gz");
    for name in ["a.nii.gz", "b.nii.gz"] {
        std::fs::copy(&real, inputs.join(name)).unwrap();
    }
    let series = common::samples().join("dicom/lung1_series");
    for name in ["IM0000.dcm", "IM0001.dcm", "IM0002.dcm"] {
        std::fs::copy(series.join(name), inputs.join("series").join(name)).unwrap();
    }
    let victims = vec![inputs.join("b.nii.gz"), inputs.join("series/IM0001.dcm")];
    let mut opts = Options::new(dir.join("out"));
    opts.jobs = Some(1);
    let report = lim::preprocess::run_with(
        std::slice::from_ref(&inputs),
        &opts,
        &NoProgress,
        &Deleting(victims.clone()),
    )
    .unwrap();
    assert_eq!(
        report.volumes, 2,
        "a.nii.gz and the series: {:?}",
        report.failures
    );
    for victim in &victims {
        assert!(
            report
                .failures
                .iter()
                .any(|f| &f.input == victim && f.error.contains("No such file or directory")),
            "{}: {:?}",
            victim.display(),
            report.failures
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A size past what the adapter allows, asked of a command, is an error that names the
/// adapter, the limit, the size and what to do: no panic, no abort (`lim bench matmul` used
/// to allocate its 40 GB host operands first, and abort).
#[test]
fn an_allocation_past_the_adapters_limit_is_an_error_from_the_command() {
    let run = common::lim(&["--tuning", "off", "bench", "matmul", "--sizes", "100000"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a 100000 x 100000 f32 operand needs 40000000000")
            && stderr.contains("(max_buffer_size); split the work into smaller pieces"),
        "{stderr}"
    );
}
