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
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect()
}
