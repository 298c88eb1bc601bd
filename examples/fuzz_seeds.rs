//! Writes the fuzz targets' seed corpora: small files of every kind the readers take, made
//! here (every NIfTI datatype in both byte orders and versions, NRRD encodings, checkpoints,
//! MedMNIST-like archives), plus the small files of the sample data and the test fixtures.
//!
//!     cargo run --example fuzz_seeds -- fuzz/corpus       (or: make fuzz-seeds)

use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: seeds OUT"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Seeds { out, count: 0 };
    nifti(&mut seeds);
    nrrd(&mut seeds);
    seeds.copy_small("dicom", &root.join("data/samples/dicom"), 64 << 10);
    seeds.copy_small("nrrd", &root.join("data/samples/ct_volumes"), 64 << 10);
    seeds.copy_small("image", &root.join("tests/fixtures/hash_images"), 64 << 10);
    seeds.copy_small("checkpoint", &root.join("tests/fixtures/torch"), 32 << 10);
    seeds.copy_small("checkpoint", &root.join("tests/fixtures/swav"), 8 << 10);
    checkpoints(&mut seeds);
    npz(&mut seeds);
    println!("{} seeds in {}", seeds.count, seeds.out.display());
}

struct Seeds {
    out: PathBuf,
    count: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self.count += 1;
    }

    /// Every file under `dir` of at most `max` bytes (images, volumes or checkpoints by the
    /// target's own kind: the target reads what it can).
    fn copy_small(&mut self, target: &str, dir: &Path, max: u64) {
        let walked = lim::io::walk(&[dir.to_path_buf()]).unwrap_or_else(|e| {
            panic!("{e} (run `make samples` first)");
        });
        for file in walked.files {
            if std::fs::metadata(&file).is_ok_and(|m| m.len() <= max) {
                let name = file
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('/', "_");
                self.add(target, &name, &std::fs::read(&file).unwrap());
            }
        }
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// A 4 x 3 x 2 volume of every NIfTI datatype lim reads, NIfTI-1 and -2, both byte orders,
/// single files and (`ni1`) pairs' headers; the target gzips or splits them itself.
fn nifti(seeds: &mut Seeds) {
    let types: [(i16, usize); 10] = [
        (2, 1),
        (4, 2),
        (8, 4),
        (16, 4),
        (64, 8),
        (256, 1),
        (512, 2),
        (768, 4),
        (1024, 8),
        (1280, 8),
    ];
    for (datatype, size) in types {
        for version in [1, 2] {
            for big in [false, true] {
                for single in [true, false] {
                    let data: Vec<u8> = (0..24 * size).map(|i| (i * 37 % 251) as u8).collect();
                    let bytes = nifti_file(version, big, single, datatype, size, &data);
                    let name = format!(
                        "v{version}_{datatype}_{}_{}.nii",
                        if big { "be" } else { "le" },
                        if single { "one" } else { "pair" }
                    );
                    seeds.add("nifti", &name, &bytes);
                }
            }
        }
    }
    let plain = nifti_file(1, false, true, 4, 2, &[1; 48]);
    seeds.add("nifti", "gzip.nii.gz", &gz(&plain));
}

fn nifti_file(
    version: u8,
    big: bool,
    single: bool,
    datatype: i16,
    size: usize,
    data: &[u8],
) -> Vec<u8> {
    let header = if version == 1 { 352 } else { 544 };
    let mut h = vec![0u8; header];
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
    let dims = [3i64, 4, 3, 2, 1, 1, 1, 1];
    if version == 1 {
        put!(0, 348i32);
        for (n, d) in dims.iter().enumerate() {
            put!(40 + 2 * n, *d as i16);
        }
        put!(70, datatype);
        put!(72, (8 * size) as i16);
        for (n, p) in [1.0f32, 0.5, 0.75, 2.0].iter().enumerate() {
            put!(76 + 4 * n, *p);
        }
        put!(108, header as f32);
        put!(112, 2f32);
        put!(116, -1024f32);
        put!(252, 1i16);
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
        h[344..348].copy_from_slice(if single { b"n+1\0" } else { b"ni1\0" });
    } else {
        put!(0, 540i32);
        h[4..12].copy_from_slice(if single {
            b"n+2\0\r\n\x1a\n"
        } else {
            b"ni2\0\r\n\x1a\n"
        });
        put!(12, datatype);
        put!(14, (8 * size) as i16);
        for (n, d) in dims.iter().enumerate() {
            put!(16 + 8 * n, *d);
        }
        for (n, p) in [1.0f64, 0.5, 0.75, 2.0].iter().enumerate() {
            put!(104 + 8 * n, *p);
        }
        put!(168, header as i64);
        put!(176, 1f64);
        put!(344, 1i32);
        put!(348, 1i32);
    }
    [h, data.to_vec()].concat()
}

/// Small NRRDs: each encoding and byte order, 2-D and 3-D, with and without geometry, and a
/// detached header naming `d.raw` (the target writes its own bytes there).
fn nrrd(seeds: &mut Seeds) {
    let values: Vec<u8> = (0..24u16).flat_map(|v| (v * 100).to_le_bytes()).collect();
    let geometry = "space: left-posterior-superior\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,2)\nspace origin: (1,2,3)\n";
    for (name, header, data) in [
        ("raw.nrrd", format!("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n{geometry}\n"), values.clone()),
        ("gzip.nrrd", format!("NRRD0004\ntype: ushort\ndimension: 3\nsizes: 4 3 2\nencoding: gzip\nendian: little\n{geometry}\n"), gz(&values)),
        ("big.nrrd", "NRRD0004\ntype: int16\ndimension: 3\nsizes: 4 3 2\nendian: big\nencoding: raw\nspacings: 1 1 3\n\n".to_string(), values.chunks(2).flat_map(|c| [c[1], c[0]]).collect()),
        ("plane.nrrd", "NRRD0005\ntype: float\ndimension: 2\nsizes: 2 3\nencoding: raw\nspace: RAS\nspace directions: (1,0,0) (0,1,0)\n\n".to_string(), values[..24].to_vec()),
        ("detached.nhdr", "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: d.raw\n\n".to_string(), Vec::new()),
    ] {
        seeds.add("nrrd", name, &[header.into_bytes(), data].concat());
    }
}

/// Safetensors of each dtype lim converts (and an int64 counter), and a small MedMNIST-like
/// archive in both image layouts.
fn checkpoints(seeds: &mut Seeds) {
    use safetensors::{Dtype, tensor::TensorView};
    let bytes: Vec<u8> = (0..48).map(|i| i as u8 * 5).collect();
    let views = [
        ("w.f32", Dtype::F32, vec![2, 3], &bytes[..24]),
        ("w.f64", Dtype::F64, vec![3], &bytes[..24]),
        ("w.f16", Dtype::F16, vec![2, 2], &bytes[..8]),
        ("w.bf16", Dtype::BF16, vec![4], &bytes[..8]),
        ("bn.num_batches_tracked", Dtype::I64, vec![], &bytes[..8]),
    ]
    .map(|(name, dtype, shape, data)| (name, TensorView::new(dtype, shape, data).unwrap()));
    let metadata = Some([("format".to_string(), "pt".to_string())].into());
    seeds.add(
        "checkpoint",
        "dtypes.safetensors",
        &safetensors::serialize(views, metadata).unwrap(),
    );
}

fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    [
        b"\x93NUMPY\x01\x00".to_vec(),
        (header.len() as u16).to_le_bytes().to_vec(),
        header.into_bytes(),
        data.to_vec(),
    ]
    .concat()
}

fn npz(seeds: &mut Seeds) {
    for (name, channels) in [("grey.npz", None), ("rgb.npz", Some(3))] {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for split in ["train", "val", "test"] {
            let mut shape = vec![4, 6, 6];
            shape.extend(channels);
            let pixels: Vec<u8> = (0..shape.iter().product::<usize>())
                .map(|i| (i * 13 % 256) as u8)
                .collect();
            let labels: Vec<u8> = [0i64, 1, 0, 1]
                .iter()
                .flat_map(|l| l.to_le_bytes())
                .collect();
            for (key, bytes) in [
                (format!("{split}_images.npy"), npy("|u1", &shape, &pixels)),
                (format!("{split}_labels.npy"), npy("<i8", &[4, 1], &labels)),
            ] {
                zip.start_file(key, zip::write::SimpleFileOptions::default())
                    .unwrap();
                zip.write_all(&bytes).unwrap();
            }
        }
        seeds.add("npz", name, &zip.finish().unwrap().into_inner());
    }
}
