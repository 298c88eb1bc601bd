//! SwAV's own kernels at the paper's sizes: Sinkhorn-Knopp on one crop's scores (batch 128,
//! 500 prototypes) and the swapped-prediction loss over 8 crops, forward and backward.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;
use lim::autograd::Var;
use lim::ssl::{SwavLoss, sinkhorn};

fn swav(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("swav", &gpu));
    group.sample_size(10);
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
            let out = loss.forward(&s, batch, &[None, None]).unwrap();
            out.loss.backward().unwrap();
            gpu.sync().unwrap();
            s.grad()
        })
    });
    group.finish();
}

criterion_group!(benches, swav);
criterion_main!(benches);
