//! Batch normalisation (training forward with the fused ReLU, and its gradient) and the
//! stem's max pooling, on ResNet-18's stem output at batch 16 and 64 x 64 input; throughput
//! is in elements/s.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;
use lim::ops::pool::PoolSpec;

fn batchnorm_and_pool(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("batchnorm, maxpool [16,64,32,32]", &gpu));
    group.sample_size(10);
    let shape = [16, 64, 32, 32];
    let n: usize = shape.iter().product();
    group.throughput(Throughput::Elements(n as u64));
    let x = Tensor::from_slice(&gpu, &shape, &common::pattern(n)).unwrap();
    let per_channel = |v: f32| Tensor::from_slice(&gpu, &[64], &[v; 64]).unwrap();
    let (gamma, beta, mean, var) = (
        per_channel(1.0),
        per_channel(0.0),
        per_channel(0.0),
        per_channel(1.0),
    );
    group.bench_function("batch_norm train + relu", |b| {
        b.iter(|| {
            let y = x
                .batch_norm_train(&gamma, &beta, &mean, &var, true)
                .unwrap();
            gpu.sync().unwrap();
            y
        })
    });
    let (_, stats) = x
        .batch_norm_train(&gamma, &beta, &mean, &var, false)
        .unwrap();
    group.bench_function("batch_norm backward", |b| {
        b.iter(|| {
            let grads = x.batch_norm_backward(&x, &gamma, &stats).unwrap();
            gpu.sync().unwrap();
            grads
        })
    });
    group.bench_function("max_pool2d 3x3/2", |b| {
        b.iter(|| {
            let y = x.max_pool2d(PoolSpec::RESNET).unwrap();
            gpu.sync().unwrap();
            y
        })
    });
    let (y, argmax) = x.max_pool2d(PoolSpec::RESNET).unwrap();
    group.bench_function("max_pool2d backward", |b| {
        b.iter(|| {
            let dx = y.max_pool2d_backward(&argmax).unwrap();
            gpu.sync().unwrap();
            dx
        })
    });
    group.finish();
}

criterion_group!(benches, batchnorm_and_pool);
criterion_main!(benches);
