//! Pillow's LANCZOS resize on the CPU, the stages of hashing PNG files (read, decode, hash as
//! it decodes), and hashing a batch of 512 x 512 slices on the GPU and the CPU; throughput is
//! in images/s.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::hash::{self, Algorithm, HashKind, Hasher, Luma8, pillow};
use rayon::prelude::*;

/// A CT-like slice: a bright ring (body outline) around a textured disc on black.
fn slice(seed: usize) -> Luma8 {
    let n = 512;
    let pixels = (0..n * n)
        .map(|i| {
            let (x, y) = ((i % n) as f32 - 256.0, (i / n) as f32 - 250.0);
            let r = x.hypot(y) + seed as f32 * 0.3;
            match r {
                r if r > 230.0 => 0,
                r if r > 215.0 => 220,
                _ => (90.0 + 40.0 * (x * 0.05).sin() * (y * 0.07 + seed as f32).cos()) as u8,
            }
        })
        .collect();
    Luma8 {
        width: n,
        height: n,
        pixels,
    }
}

fn resize(c: &mut Criterion) {
    let image = slice(0);
    let mut group = c.benchmark_group("resize 512x512 LANCZOS, CPU, one thread");
    group.throughput(Throughput::Elements(1));
    for (w, h) in [(9, 8), (17, 16), (32, 32)] {
        group.bench_function(BenchmarkId::from_parameter(format!("{w}x{h}")), |b| {
            b.iter(|| pillow::resize(&image, w, h))
        });
    }
    group.finish();
}

fn batched(c: &mut Criterion) {
    let gpu = common::gpu();
    let images: Vec<Luma8> = (0..64).map(slice).collect();
    let refs: Vec<&Luma8> = images.iter().collect();
    let mut group = c.benchmark_group(common::group_name("hash 64 slices 512x512", &gpu));
    group.sample_size(10);
    group.throughput(Throughput::Elements(images.len() as u64));
    for algorithm in [Algorithm::Dhash, Algorithm::Phash] {
        let kind = HashKind::new(algorithm, 8).unwrap();
        let hasher = Hasher::with_gpu(gpu.clone(), kind).unwrap();
        group.bench_function(BenchmarkId::new(format!("{algorithm}"), "GPU"), |b| {
            b.iter(|| hasher.hash_images(&refs).unwrap())
        });
        group.bench_function(
            BenchmarkId::new(format!("{algorithm}"), "CPU, all threads"),
            |b| {
                b.iter(|| {
                    images
                        .par_iter()
                        .map(|i| hash::hash_luma(i, kind))
                        .collect::<Vec<_>>()
                })
            },
        );
    }
    group.finish();
}

/// The stages of `lim hash` on one file, one thread: reading it, decoding it (the `png`
/// crate, the bound), and hashing it as it decodes (what `lim hash` does on the CPU).
fn from_files(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("lim-bench-hash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<_> = (0..8)
        .map(|seed| {
            let path = dir.join(format!("{seed}.png"));
            let image = slice(seed);
            let pixels = lim::io::png::Pixels::Gray8(image.pixels);
            lim::io::png::write(&path, image.width, image.height, &pixels).unwrap();
            path
        })
        .collect();
    let kind = HashKind::new(Algorithm::Dhash, 8).unwrap();
    let mut group = c.benchmark_group("a 512x512 grey PNG slice, CPU, one thread");
    group.throughput(Throughput::Elements(files.len() as u64));
    group.bench_function("read", |b| {
        b.iter(|| {
            for f in &files {
                std::hint::black_box(std::fs::read(f).unwrap());
            }
        })
    });
    group.bench_function("read + decode (png crate)", |b| {
        b.iter(|| {
            for f in &files {
                let bytes = std::fs::read(f).unwrap();
                lim::bench::decode_png(&bytes).unwrap();
            }
        })
    });
    group.bench_function("read + decode + dhash (hash_file)", |b| {
        b.iter(|| {
            for f in &files {
                hash::hash_file(f, kind).unwrap();
            }
        })
    });
    group.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(benches, resize, from_files, batched);
criterion_main!(benches);
