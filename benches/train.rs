//! Training on ResNet-18: one optimiser update of its 11.7 M parameters (SGD with momentum,
//! LARS with the paper's settings, Adam), and one whole step (forward in training mode,
//! cross-entropy, backward, SGD) at batch 16 and 64 x 64 px, as `lim bench train-step`.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lim::bench::{OptimizerKind, TrainStep};
use lim::nn::{self, Arch};

fn optimiser_updates(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("optimiser update, ResNet-18", &gpu));
    group.sample_size(10);
    for kind in OptimizerKind::ALL {
        let mut train = TrainStep::new(&gpu, Arch::ResNet18, 16, 64, kind, false).unwrap();
        train.step().unwrap();
        let numel: usize = nn::parameters(&train.model)
            .iter()
            .map(|p| p.value().numel())
            .sum();
        group.throughput(Throughput::Elements(numel as u64));
        // The update alone, on the gradients the step left.
        group.bench_function(kind.name(), |b| {
            b.iter(|| {
                train.optimizer.step().unwrap();
                gpu.sync().unwrap();
            })
        });
    }
    group.finish();
}

fn train_step(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name(
        "train step, ResNet-18 b16 64px SGD",
        &gpu,
    ));
    group.sample_size(10);
    group.throughput(Throughput::Elements(16));
    let mut train =
        TrainStep::new(&gpu, Arch::ResNet18, 16, 64, OptimizerKind::Sgd, false).unwrap();
    group.bench_function("step", |b| b.iter(|| train.step().unwrap()));
    group.finish();
}

criterion_group!(benches, optimiser_updates, train_step);
criterion_main!(benches);
