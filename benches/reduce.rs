//! Sums of 4M elements, every variant, as many short rows and as a few long ones.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;
use lim::ops::reduce::{ReduceOp, ReduceVariant};

fn reduce(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("reduce sum 4M", &gpu));
    group.sample_size(10);
    for shape in [[1usize << 16, 64], [16, 1 << 18]] {
        let n = shape[0] * shape[1];
        let x = Tensor::from_slice(&gpu, &shape, &common::pattern(n)).unwrap();
        group.throughput(Throughput::Elements(n as u64));
        let label = format!("{}x{}", shape[0], shape[1]);
        for variant in ReduceVariant::ALL {
            group.bench_function(BenchmarkId::new(variant.name(), &label), |b| {
                b.iter(|| {
                    let out = x.reduce_with(1, ReduceOp::Sum, variant).unwrap();
                    gpu.sync().unwrap();
                    out
                })
            });
        }
        group.bench_function(BenchmarkId::new("autotuned", &label), |b| {
            b.iter(|| {
                let out = x.sum(1).unwrap();
                gpu.sync().unwrap();
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reduce);
criterion_main!(benches);
