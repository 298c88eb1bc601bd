//! Elementwise kernels on 4M elements; throughput is in elements per second.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;

fn elementwise(c: &mut Criterion) {
    let gpu = common::gpu();
    let n = 1 << 22;
    let x = Tensor::from_slice(&gpu, &[n], &common::pattern(n)).unwrap();
    let y = Tensor::from_slice(&gpu, &[n], &common::pattern(n)).unwrap();
    let mut group = c.benchmark_group(common::group_name("elementwise 4M", &gpu));
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("add", |b| {
        b.iter(|| {
            let out = x.add(&y).unwrap();
            gpu.sync().unwrap();
            out
        })
    });
    group.bench_function("add_", |b| {
        b.iter(|| {
            x.add_(&y).unwrap();
            gpu.sync().unwrap()
        })
    });
    group.bench_function("scale_", |b| {
        b.iter(|| {
            x.scale_(0.5).unwrap();
            gpu.sync().unwrap()
        })
    });
    group.bench_function("relu", |b| {
        b.iter(|| {
            let out = x.relu().unwrap();
            gpu.sync().unwrap();
            out
        })
    });
    group.finish();
}

criterion_group!(benches, elementwise);
criterion_main!(benches);
