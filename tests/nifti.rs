//! The NIfTI reader on synthetic files of every datatype and both byte orders, NIfTI-1 and
//! NIfTI-2, and on the sample data's edge cases.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use lim::io::{IoError, Samples, nifti};

/// What a synthetic NIfTI file holds.
#[derive(Clone, Copy)]
struct Spec {
    version: u8,
    big: bool,
    datatype: i16,
    bytes_per: usize,
    dims: [i64; 3],
    slope: f64,
    inter: f64,
}

/// A minimal NIfTI-1 (348-byte header) or NIfTI-2 (540-byte) single file.
fn write_nifti(path: &Path, spec: &Spec, data: &[u8]) {
    write_nifti_with(path, spec, data, 0, false);
}

/// [`write_nifti`] with `pad` bytes between the header and the data, gzipped if `gzip`.
fn write_nifti_with(path: &Path, spec: &Spec, data: &[u8], pad: usize, gzip: bool) {
    let Spec {
        version,
        big,
        datatype,
        bytes_per,
        dims,
        slope,
        inter,
    } = *spec;
    let header = if version == 1 { 352 } else { 544 };
    let mut h = vec![0u8; header + pad];
    macro_rules! put {
        ($at:expr, $v:expr) => {{
            let b = if big {
                $v.to_be_bytes()
            } else {
                $v.to_le_bytes()
            };
            h[$at..$at + b.len()].copy_from_slice(&b);
        }};
    }
    if version == 1 {
        put!(0, 348i32);
        for (n, d) in [3i64, dims[0], dims[1], dims[2], 1, 1, 1, 1]
            .iter()
            .enumerate()
        {
            put!(40 + 2 * n, *d as i16);
        }
        put!(70, datatype);
        put!(72, (8 * bytes_per) as i16);
        for (n, p) in [1.0f32, 0.5, 0.75, 2.0].iter().enumerate() {
            put!(76 + 4 * n, *p);
        }
        put!(108, (header + pad) as f32);
        put!(112, slope as f32);
        put!(116, inter as f32);
        put!(254, 1i16);
        for (r, row) in [
            [-0.5f32, 0.0, 0.0, 10.0],
            [0.0, 0.75, 0.0, -20.0],
            [0.0, 0.0, 2.0, 30.0],
        ]
        .iter()
        .enumerate()
        {
            for (c, v) in row.iter().enumerate() {
                put!(280 + 16 * r + 4 * c, *v);
            }
        }
        h[344..348].copy_from_slice(b"n+1\0");
    } else {
        put!(0, 540i32);
        h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        put!(12, datatype);
        put!(14, (8 * bytes_per) as i16);
        for (n, d) in [3i64, dims[0], dims[1], dims[2], 1, 1, 1, 1]
            .iter()
            .enumerate()
        {
            put!(16 + 8 * n, *d);
        }
        for (n, p) in [1.0f64, 0.5, 0.75, 2.0].iter().enumerate() {
            put!(104 + 8 * n, *p);
        }
        put!(168, (header + pad) as i64);
        put!(176, slope);
        put!(184, inter);
        put!(348, 1i32);
        for (r, row) in [
            [-0.5f64, 0.0, 0.0, 10.0],
            [0.0, 0.75, 0.0, -20.0],
            [0.0, 0.0, 2.0, 30.0],
        ]
        .iter()
        .enumerate()
        {
            for (c, v) in row.iter().enumerate() {
                put!(400 + 32 * r + 8 * c, *v);
            }
        }
    }
    h.extend_from_slice(data);
    if gzip {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&h).unwrap();
        h = z.finish().unwrap();
    }
    std::fs::write(path, h).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-nifti-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn every_datatype_in_both_byte_orders_and_both_versions() {
    let dims = [3, 2, 2];
    let values: Vec<f64> = (0..12)
        .map(|v| v as f64 * 3.0 - 7.0 + if v == 5 { 0.5 } else { 0.0 })
        .collect();
    macro_rules! case {
        ($code:expr, $t:ty, $variant:ident) => {{
            // Plain and gzipped; the padded data start on no whole sample but a byte's.
            for n in 0..16usize {
                let (version, big, pad, gzip) =
                    ((1 + n % 2) as u8, n / 2 % 2 == 1, n / 4 % 2 * 3, n >= 8);
                let typed: Vec<$t> = values
                    .iter()
                    .map(|&v| {
                        if <$t>::MIN as f64 == 0.0 {
                            v.abs() as $t
                        } else {
                            v as $t
                        }
                    })
                    .collect();
                let bytes: Vec<u8> = typed
                    .iter()
                    .flat_map(|v| {
                        if big {
                            v.to_be_bytes().to_vec()
                        } else {
                            v.to_le_bytes().to_vec()
                        }
                    })
                    .collect();
                let gz = if gzip { ".gz" } else { "" };
                let path = scratch(&format!("t{}_{version}_{big}_{pad}.nii{gz}", $code));
                let spec = Spec {
                    version,
                    big,
                    datatype: $code,
                    bytes_per: std::mem::size_of::<$t>(),
                    dims,
                    slope: 2.0,
                    inter: -1.0,
                };
                write_nifti_with(&path, &spec, &bytes, pad, gzip);
                let vol = nifti::read(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(vol.dims, [3, 2, 2]);
                match &vol.samples {
                    Samples::$variant(got) => {
                        assert_eq!(got, &typed, "{}", path.display())
                    }
                    other => panic!("{} read as {other:?}", path.display()),
                }
                let r = vol.rescale_of(0);
                assert_eq!((r.slope, r.inter), (2.0, -1.0));
                // sform RAS diag(-0.5, 0.75, 2) is LPS diag(0.5, -0.75, 2).
                assert_eq!(vol.affine[0], [0.5, 0.0, 0.0, -10.0]);
                assert_eq!(vol.affine[1], [0.0, -0.75, 0.0, 20.0]);
                assert_eq!(vol.spacing(), [0.5, 0.75, 2.0]);
            }
        }};
    }
    case!(2, u8, U8);
    case!(4, i16, I16);
    case!(8, i32, I32);
    case!(16, f32, F32);
    case!(64, f64, F64);
    case!(256, i8, I8);
    case!(512, u16, U16);
    case!(768, u32, U32);
    case!(1024, i64, I64);
    case!(1280, u64, U64);
}

#[test]
fn bad_headers_and_data_are_named_errors() {
    let path = scratch("complex.nii");
    let spec = |datatype, bytes_per, dims| Spec {
        version: 1,
        big: false,
        datatype,
        bytes_per,
        dims,
        slope: 1.0,
        inter: 0.0,
    };
    write_nifti(&path, &spec(32, 8, [2, 2, 1]), &[0u8; 32]);
    let err = nifti::read(&path).unwrap_err();
    assert!(
        matches!(err, IoError::Unsupported { .. }) && err.to_string().contains("complex64"),
        "{err}"
    );

    let path = scratch("truncated.nii");
    write_nifti(&path, &spec(4, 2, [4, 4, 4]), &[0u8; 100]);
    let err = nifti::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("truncated.nii") && err.contains("truncated image data: 100 of 128 bytes"),
        "{err}"
    );

    let path = scratch("tiny.nii");
    std::fs::write(&path, b"hello").unwrap();
    let err = nifti::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("tiny.nii") && err.contains("not a NIfTI file"),
        "{err}"
    );
}

#[test]
fn sample_edge_cases() {
    let s = common::samples().join("nifti");
    let read = |p: &str| nifti::read(&s.join(p));
    // One image in both byte orders, and in NIfTI-1 and NIfTI-2.
    let (little, big) = (
        read("nifti-reader-js_0.5.4/little.nii.gz").unwrap(),
        read("nifti-reader-js_0.5.4/big.nii.gz").unwrap(),
    );
    assert_eq!(little.dims, big.dims);
    assert!((0..little.samples.len()).all(|i| little.samples.get(i) == big.samples.get(i)));
    let (n1, n2) = (
        read("nifti-reader-js_0.5.4/avg152T1_LR_nifti.nii.gz").unwrap(),
        read("nifti-reader-js_0.5.4/avg152T1_LR_nifti2.nii.gz").unwrap(),
    );
    assert_eq!(n1.dims, [91, 109, 91]);
    assert_eq!(n1.dims, n2.dims);
    assert_eq!(n1.affine, n2.affine);
    assert!((0..n1.samples.len()).all(|i| n1.samples.get(i) == n2.samples.get(i)));
    // Extensions between header and data.
    assert!(read("nifti-reader-js_0.5.4/with_extension.nii.gz").is_ok());
    for (file, says) in [
        ("nifti-reader-js_0.5.4/not-nifti.nii", "not a NIfTI file"),
        ("nibabel_5.4.2/nifti1.hdr", "header only"),
        ("nibabel_5.4.2/analyze.hdr", "Analyze 7.5"),
        ("nibabel_5.4.2/example4d.nii.gz", "4-D image (2 volumes"),
    ] {
        let err = read(file).unwrap_err().to_string();
        assert!(
            err.contains(file.rsplit('/').next().unwrap()) && err.contains(says),
            "{file}: {err}"
        );
    }
    // A float64 CT, as the paper's PET-CT data comes.
    let head = nifti::read(&common::samples().join("ct_volumes/ct_head.nii.gz")).unwrap();
    assert_eq!(head.dims, [190, 240, 95]);
    assert!(matches!(head.samples, Samples::F64(_)));
}

#[test]
fn a_header_and_image_pair() {
    let hdr = scratch("pair.hdr");
    let data: Vec<u8> = (0..8i16).flat_map(|v| v.to_le_bytes()).collect();
    let spec = Spec {
        version: 1,
        big: false,
        datatype: 4,
        bytes_per: 2,
        dims: [2, 2, 2],
        slope: 1.0,
        inter: 0.0,
    };
    write_nifti(&hdr, &spec, &[]);
    // A pair's header says `ni1` and the data start at offset 0 of the .img.
    let mut bytes = std::fs::read(&hdr).unwrap();
    bytes[344..348].copy_from_slice(b"ni1\0");
    bytes[108..112].copy_from_slice(&0f32.to_le_bytes());
    std::fs::write(&hdr, &bytes[..348]).unwrap();
    std::fs::write(hdr.with_extension("img"), &data).unwrap();
    let vol = nifti::read(&hdr).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vol.sources.len(), 2);
    assert!(matches!(&vol.samples, Samples::I16(v) if v == &(0..8).collect::<Vec<i16>>()));
}

/// A header that claims a huge volume over a few bytes of data is an error that names the
/// file and the limit, before anything that size is allocated; dimensions whose product
/// overflows are too (they used to overflow the size computation). Under the limit, a claim
/// past the data is a truncation.
#[test]
fn huge_claimed_dimensions_are_clear_errors() {
    let huge = Spec {
        version: 2,
        big: false,
        datatype: 16,
        bytes_per: 4,
        dims: [30000, 30000, 30000],
        slope: 1.0,
        inter: 0.0,
    };
    let path = scratch("huge.nii");
    write_nifti(&path, &huge, &[0u8; 64]);
    let err = nifti::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("huge.nii")
            && err.contains("claim 27000000000000 voxels, past the limit of 1073741824"),
        "{err}"
    );
    let path = scratch("short.nii");
    write_nifti(
        &path,
        &Spec {
            dims: [1000, 1000, 1000],
            ..huge
        },
        &[0u8; 64],
    );
    let err = nifti::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("short.nii") && err.contains("truncated image data: 64 of 4000000000 bytes"),
        "{err}"
    );
    let overflowing = Spec {
        dims: [1 << 40, 1 << 40, 1 << 40],
        ..huge
    };
    let path = scratch("overflowing.nii");
    write_nifti(&path, &overflowing, &[0u8; 64]);
    let err = nifti::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("overflowing.nii") && err.contains("past the limit"),
        "{err}"
    );
}

/// `nifti::write` (the benchmark layouts' writer) gives back, through `nifti::read`, the
/// samples and shape it was given, plain and gzipped, for every sample type.
#[test]
fn written_volumes_read_back_unchanged() {
    let dir = scratch("write");
    std::fs::create_dir_all(&dir).unwrap();
    let dims = [3, 2, 4];
    let all = [
        Samples::U8((0..24).collect()),
        Samples::I8((-12..12).collect()),
        Samples::U16((0..24).map(|v| v * 2000).collect()),
        Samples::I16((-12..12).map(|v| v * 1000).collect()),
        Samples::U32((0..24).map(|v| v << 20).collect()),
        Samples::I32((-12..12).map(|v| v << 20).collect()),
        Samples::U64((0..24).map(|v| v << 40).collect()),
        Samples::I64((-12..12).map(|v| v << 40).collect()),
        Samples::F32((0..24).map(|v| v as f32 / 3.0).collect()),
        Samples::F64((0..24).map(|v| -(v as f64) / 7.0).collect()),
    ];
    for samples in &all {
        for name in ["v.nii", "v.nii.gz"] {
            let path = dir.join(name);
            nifti::write(&path, dims, samples).unwrap();
            let volume = nifti::read(&path).unwrap();
            let ty = samples.sample_type();
            assert_eq!(volume.dims, dims, "{ty:?} {name}");
            assert_eq!(volume.samples.sample_type(), ty, "{name}");
            assert_eq!(
                volume.samples.to_le_bytes(),
                samples.to_le_bytes(),
                "{ty:?} {name}"
            );
            assert_eq!(volume.rescale, [lim::io::Rescale::IDENTITY]);
            assert_eq!(volume.spacing(), [1.0; 3]);
        }
    }
    let err = nifti::write(
        &dir.join("big.nii"),
        [40000, 1, 1],
        &Samples::U8(vec![0; 40000]),
    );
    assert!(err.unwrap_err().to_string().contains("big.nii"));
}
