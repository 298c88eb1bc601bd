//! conv2d on ResNet-18's layer shapes at batch 16 and 64 x 64 input (the peers' setting):
//! forward and both gradients, every variant; throughput is in FLOP/s.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::bench::ConvCase;
use lim::ops::conv2d::{ConvPass, ConvVariant};

fn conv2d(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("conv2d resnet18 b16 64px", &gpu));
    group.sample_size(10);
    for case in ConvCase::resnet18(&gpu).unwrap() {
        group.throughput(Throughput::Elements(case.dims.flops() as u64));
        for v in ConvVariant::ALL {
            for (pass, label) in [
                (ConvPass::Forward, "forward"),
                (ConvPass::BackwardInput, "input grad"),
                (ConvPass::BackwardWeight, "weight grad"),
            ] {
                let id = BenchmarkId::new(format!("{label} {}", v.name()), case.layer.name);
                group.bench_function(id, |b| {
                    b.iter(|| {
                        let out = case.run(pass, v).unwrap();
                        gpu.sync().unwrap();
                        out
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, conv2d);
criterion_main!(benches);
