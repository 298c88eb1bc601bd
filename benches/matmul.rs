//! Square f32 matmul, every variant and the autotuned choice; throughput is in FLOP/s.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;
use lim::ops::matmul::{MatmulDims, MatmulOptions, MatmulVariant};

fn matmul(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("matmul", &gpu));
    group.sample_size(10);
    for n in [256usize, 1024] {
        let a = Tensor::from_slice(&gpu, &[n, n], &common::pattern(n * n)).unwrap();
        let b = Tensor::from_slice(&gpu, &[n, n], &common::pattern(n * n)).unwrap();
        let dims = MatmulDims::infer(a.shape(), b.shape(), MatmulOptions::default()).unwrap();
        group.throughput(Throughput::Elements(dims.flops() as u64));
        for variant in MatmulVariant::available(&gpu) {
            group.bench_function(BenchmarkId::new(variant.name(), n), |bench| {
                bench.iter(|| {
                    let out = a.matmul_with(&b, dims.opts, variant).unwrap();
                    gpu.sync().unwrap();
                    out
                })
            });
        }
        group.bench_function(BenchmarkId::new("autotuned", n), |bench| {
            bench.iter(|| {
                let out = a.matmul(&b).unwrap();
                gpu.sync().unwrap();
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
