//! Hashes against Python imagehash's (golden values from tests/fixtures/hashes/hash_table.py):
//! every slice of the sample CTs and a set of awkward images, on the CPU and the GPU paths, and
//! the hasher on a device the caller owns.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::lim;

use lim::hash::{self, Algorithm, BufferImage, Hash, HashKind, Hasher, Luma8};

const KINDS: [(Algorithm, usize); 6] = [
    (Algorithm::Dhash, 8),
    (Algorithm::Dhash, 16),
    (Algorithm::Phash, 8),
    (Algorithm::Phash, 16),
    (Algorithm::Ahash, 8),
    (Algorithm::Ahash, 16),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The slices the golden hashes were made from: `lim preprocess --mode paper` of the samples.
fn paper_slices() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("lim-hash-slices-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let report = common::paper_slices(&out);
        assert_eq!(report.slices_written, 387);
        out
    })
}

/// `file -> hex per kind`, from a golden TSV with a header line.
fn golden(tsv: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(tsv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let expected: Vec<String> = KINDS.iter().map(|(a, n)| format!("{a}{n}")).collect();
    assert_eq!(&header[1..], expected.as_slice());
    lines
        .map(|l| {
            let mut cols = l.split('\t');
            (
                cols.next().unwrap().to_string(),
                cols.map(str::to_string).collect(),
            )
        })
        .collect()
}

fn check_all(dir: &Path, tsv: &Path, gpu: bool) {
    let rows = golden(tsv);
    let images: Vec<Luma8> = rows
        .iter()
        .map(|(f, _)| hash::open_luma(&dir.join(f)).unwrap())
        .collect();
    let refs: Vec<&Luma8> = images.iter().collect();
    for (k, &(algorithm, size)) in KINDS.iter().enumerate() {
        let kind = HashKind::new(algorithm, size).unwrap();
        let hashes: Vec<Hash> = if gpu {
            Hasher::with_gpu(common::gpu(), kind)
                .unwrap()
                .hash_images(&refs)
                .unwrap()
        } else {
            refs.iter().map(|i| hash::hash_luma(i, kind)).collect()
        };
        for ((file, want), got) in rows.iter().zip(&hashes) {
            assert_eq!(
                got.to_string(),
                want[k],
                "{file} {algorithm}{size} on the {}",
                if gpu { "GPU" } else { "CPU" }
            );
            if !gpu {
                // From the file: 8-bit grey PNGs row by row as they decode, the rest whole.
                let streamed = hash::hash_file(&dir.join(file), kind).unwrap();
                assert_eq!(
                    streamed.to_string(),
                    want[k],
                    "{file} {algorithm}{size} from the file"
                );
            }
        }
    }
}

#[test]
fn cpu_hashes_equal_imagehash_on_every_sample_ct_slice() {
    check_all(
        paper_slices(),
        &fixtures().join("hashes/ct_slices.tsv"),
        false,
    );
}

#[test]
fn gpu_hashes_equal_imagehash_on_every_sample_ct_slice() {
    check_all(
        paper_slices(),
        &fixtures().join("hashes/ct_slices.tsv"),
        true,
    );
}

#[test]
fn awkward_images_hash_as_imagehash_hashes_them() {
    let dir = fixtures().join("hash_images");
    let rows = golden(&dir.join("hashes.tsv"));
    assert!(rows.len() >= 12);
    check_all(&dir, &dir.join("hashes.tsv"), false);
    check_all(&dir, &dir.join("hashes.tsv"), true);
}

#[test]
fn a_hasher_on_the_callers_device_hashes_host_images_buffers_and_textures() {
    // The caller's own wgpu set-up.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let kind = HashKind::DHASH;
    let hasher = Hasher::new(&device, &queue, kind).unwrap();

    let files = ["rgb_300x200.png", "tall_40x300.png", "tiny_5x7.png"];
    let images: Vec<Luma8> = files
        .iter()
        .map(|f| hash::open_luma(&fixtures().join("hash_images").join(f)).unwrap())
        .collect();
    let cpu: Vec<Hash> = images.iter().map(|i| hash::hash_luma(i, kind)).collect();
    assert_eq!(
        hasher
            .hash_images(&images.iter().collect::<Vec<_>>())
            .unwrap(),
        cpu
    );

    // A buffer of the caller's with its own layout: padding between rows and images.
    let mut bytes = Vec::new();
    let mut layout = Vec::new();
    for image in &images {
        let stride = (image.width + 7).next_multiple_of(4);
        let offset = bytes.len() as u64 + 12;
        bytes.resize(offset as usize, 0xAB);
        for row in image.pixels.chunks(image.width) {
            let start = bytes.len();
            bytes.extend_from_slice(row);
            bytes.resize(start + stride, 0xCD);
        }
        layout.push(BufferImage {
            offset,
            width: image.width,
            height: image.height,
            stride,
        });
    }
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    let buffer = wgpu::util::DeviceExt::create_buffer_init(
        &device,
        &wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE,
        },
    );
    assert_eq!(hasher.hash_buffer(&buffer, &layout).unwrap(), cpu);
    let misaligned = [BufferImage {
        offset: 2,
        ..layout[0]
    }];
    assert!(
        hasher
            .hash_buffer(&buffer, &misaligned)
            .unwrap_err()
            .to_string()
            .contains("multiples of 4")
    );

    // A texture array: one layer per image, all of one size.
    let (w, h) = (images[1].width, images[1].height);
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: w as u32,
            height: h as u32,
            depth_or_array_layers: 2,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R8Unorm,
        usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let flipped = Luma8 {
        pixels: images[1].pixels.iter().rev().copied().collect(),
        ..images[1].clone()
    };
    for (layer, image) in [&images[1], &flipped].iter().enumerate() {
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: 0,
                    z: layer as u32,
                },
                aspect: wgpu::TextureAspect::All,
            },
            &image.pixels,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(w as u32),
                rows_per_image: Some(h as u32),
            },
            wgpu::Extent3d {
                width: w as u32,
                height: h as u32,
                depth_or_array_layers: 1,
            },
        );
    }
    assert_eq!(
        hasher.hash_texture(&texture).unwrap(),
        vec![cpu[1].clone(), hash::hash_luma(&flipped, kind)]
    );
}

#[test]
fn unreadable_images_are_errors_that_name_the_file() {
    let err = hash::open_luma(&common::samples().join("ct_volumes/ct_head.nii.gz"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ct_head.nii.gz") && err.contains("cannot decode the image"),
        "{err}"
    );
}

/// A slice that breaks off, or whose last image-data chunk is damaged, comes out of
/// `hash_file` (which hashes 8-bit grey PNGs row by row as they decode) as it comes out of a
/// whole decode: the same hash or the same error, naming the file.
#[test]
fn a_broken_png_fails_from_the_file_as_it_fails_whole() {
    let slice = lim::io::walk(&[paper_slices().to_path_buf()])
        .unwrap()
        .files
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    let bytes = std::fs::read(&slice).unwrap();
    let dir = std::env::temp_dir().join(format!("lim-hash-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let last_data = bytes.windows(4).rposition(|w| w == b"IDAT").unwrap();
    let length = u32::from_be_bytes(bytes[last_data - 4..last_data].try_into().unwrap()) as usize;
    let mut bad_crc = bytes.clone();
    bad_crc[last_data + 4 + length] ^= 0xff;
    let mut bad_data = bytes.clone();
    bad_data[last_data + 4 + length / 2] ^= 0xff;
    let kind = HashKind::new(Algorithm::Dhash, 8).unwrap();
    for (name, content) in [
        ("cut.png", &bytes[..bytes.len() / 2]),
        ("crc.png", &bad_crc[..]),
        ("data.png", &bad_data[..]),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, content).unwrap();
        let whole = hash::open_luma(&file).map(|i| hash::hash_luma(&i, kind).to_string());
        let streamed = hash::hash_file(&file, kind).map(|h| h.to_string());
        match (&whole, &streamed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "{name}");
                assert!(a.to_string().contains(name), "{a}");
            }
            _ => panic!("{name}: whole {whole:?}, from the file {streamed:?}"),
        }
        if name == "cut.png" {
            assert!(whole.is_err());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_hash_command_prints_what_imagehash_prints() {
    let dir = fixtures().join("hash_images");
    let mut rows = golden(&dir.join("hashes.tsv"));
    rows.sort();
    let dir_arg = dir.to_str().unwrap();
    for (k, &(algorithm, size)) in KINDS.iter().enumerate() {
        // The default hashes on the CPU where the adapter is a software one.
        for path in [&[][..], &["--gpu"][..], &["--cpu"][..]] {
            let (algo, size) = (algorithm.to_string(), size.to_string());
            let args = [
                &["hash", "--algo", &algo, "--hash-size", &size][..],
                path,
                &[dir_arg],
            ];
            let out = lim(&args.concat());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Folders are listed recursively in byte order.
            let want: String = rows
                .iter()
                .map(|(file, hex)| format!("{}\t{}\n", dir.join(file).display(), hex[k]))
                .collect();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "{algo}{size} {path:?}"
            );
        }
    }

    let bad = common::samples().join("ct_volumes/ct_head.nii.gz");
    let png = dir.join("tiny_3x2.png");
    let out = lim(&[
        "hash",
        "--json",
        bad.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "one unreadable file does not fail the run"
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["path"], png.to_str().unwrap());
    assert_eq!(
        line["hash"],
        rows.iter().find(|r| r.0 == "tiny_3x2.png").unwrap().1[0]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ct_head.nii.gz"));
    let out = lim(&["hash", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "nothing readable fails");
}

#[test]
fn the_hash_bench_names_its_adapter_and_every_path() {
    let dir = fixtures().join("hash_images");
    let out = lim(&[
        "bench",
        "hash",
        "--slices",
        dir.to_str().unwrap(),
        "--passes",
        "1",
        "--python",
        "none",
        "--json",
    ]);
    let rows = common::json_lines(&out);
    let adapter = common::gpu().info().name.clone();
    for what in [
        "read",
        "read + decode, png crate",
        "decode",
        "decode + dhash, CPU",
        "decode + dhash, GPU",
        "phash only, CPU",
    ] {
        let row = rows.iter().find(|r| r["what"] == what).unwrap();
        assert_eq!(row["adapter"], adapter.as_str());
        assert!(row["images_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    let stages = rows
        .iter()
        .find(|r| r["what"] == "stages per image and core")
        .unwrap();
    for stage in ["read_ms", "decode_ms", "dhash_ms", "hash_vs_decode_bound"] {
        assert!(stages[stage].as_f64().unwrap() > 0.0, "{stages}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("imagehash not measured"));
}

/// `lim hash --shard i/N --out FILE`: the parts hash every image exactly once, whole volumes
/// each (names `{patient}_{study}_{i}.png` and `{patient}_{i}.png` group as `lim reduce`
/// groups them), with the hashes one run prints.
#[test]
fn hash_parts_cover_every_image_once_by_volume() {
    let input = paper_slices().to_str().unwrap();
    let one = lim(&["hash", "--cpu", input]);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let one: BTreeSet<String> = String::from_utf8_lossy(&one.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(one.len(), 387);
    let dir = std::env::temp_dir().join(format!("lim-hash-parts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut parts = BTreeSet::new();
    let mut volumes_seen = BTreeSet::new();
    for i in 0..3 {
        let out = dir.join(format!("part{i}.tsv"));
        let run = lim(&[
            "hash",
            "--cpu",
            input,
            "--shard",
            &format!("{i}/3"),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(run.stdout.is_empty(), "the hashes go to --out");
        let text = std::fs::read_to_string(&out).unwrap();
        let volumes: BTreeSet<String> = text
            .lines()
            .map(|l| {
                let name = Path::new(l.split('\t').next().unwrap())
                    .file_stem()
                    .unwrap();
                let name = name.to_str().unwrap();
                name[..name.rfind('_').unwrap()].to_string()
            })
            .collect();
        for volume in volumes {
            assert!(volumes_seen.insert(volume.clone()), "{volume} in two parts");
        }
        for line in text.lines() {
            assert!(parts.insert(line.to_string()), "{line} hashed twice");
        }
    }
    assert_eq!(parts, one);
    assert!(volumes_seen.len() >= 3, "{volumes_seen:?}");
    let refused = lim(&["hash", input, "--shard", "1/1"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a shard"));
    std::fs::remove_dir_all(&dir).unwrap();
}
