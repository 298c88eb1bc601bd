//! SwAV's own kernels at the paper's sizes: the multi-crop augmentation of 512 x 512 slices
//! (2 x 224 + 6 x 96 px, batch 16), Sinkhorn-Knopp on one crop's scores (batch 128, 500
//! prototypes) and the swapped-prediction loss over 8 crops, forward and backward.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;
use lim::autograd::Var;
use lim::dist::Solo;
use lim::ssl::{MultiCrop, SwavLoss, sinkhorn};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn swav(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("swav", &gpu));
    group.sample_size(10);
    let slices = lim::bench::ct_like_slices(16, 512);
    let multicrop = MultiCrop::paper();
    let views = multicrop.sample(&mut StdRng::seed_from_u64(0), &[(512, 512); 16]);
    group.throughput(Throughput::Elements(16));
    group.bench_function(BenchmarkId::new("multi-crop", "16 slices 512px"), |b| {
        b.iter(|| {
            let crops = multicrop.apply(&gpu, &slices, &views).unwrap();
            gpu.sync().unwrap();
            crops
        })
    });
    let (batch, k) = (128, 500);
    let scores = Tensor::from_slice(&gpu, &[batch, k], &common::pattern(batch * k)).unwrap();
    group.throughput(Throughput::Elements((batch * k) as u64));
    group.bench_function(BenchmarkId::new("sinkhorn", "128x500"), |b| {
        b.iter(|| {
            let q = sinkhorn(&scores, 0.05, 3).unwrap();
            gpu.sync().unwrap();
            q
        })
    });
    let all = Tensor::from_slice(&gpu, &[8 * batch, k], &common::pattern(8 * batch * k)).unwrap();
    let loss = SwavLoss::default();
    group.throughput(Throughput::Elements((8 * batch * k) as u64));
    group.bench_function(BenchmarkId::new("loss fwd+bwd", "8x128x500"), |b| {
        b.iter(|| {
            let s = Var::param(all.clone());
            let out = loss.forward(&s, batch, &[None, None], &Solo).unwrap();
            out.loss.backward().unwrap();
            gpu.sync().unwrap();
            s.grad()
        })
    });
    group.finish();
}

criterion_group!(benches, swav);
criterion_main!(benches);
