//! Training on ResNet-18: one optimiser update of its 11.7 M parameters (SGD with momentum,
//! LARS with the paper's settings, Adam), and one whole step (forward in training mode,
//! cross-entropy, backward, SGD) at batch 16 and 64 x 64 px, as `lim bench train-step`.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lim::Tensor;
use lim::autograd::Var;
use lim::nn::{self, Arch, Random, ResNet, ResNetConfig};
use lim::optim::{Adam, Optimizer, Sgd};

fn resnet18(gpu: &std::sync::Arc<lim::Gpu>) -> (ResNet, Vec<Var>) {
    let config = ResNetConfig {
        num_classes: Some(10),
        ..ResNetConfig::torchvision(Arch::ResNet18)
    };
    let model = ResNet::new(config, &mut Random::new(gpu, 0)).unwrap();
    let params = nn::parameters(&model);
    (model, params)
}

fn optimiser_updates(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("optimiser update, ResNet-18", &gpu));
    group.sample_size(10);
    let (_, params) = resnet18(&gpu);
    let numel: usize = params.iter().map(|p| p.value().numel()).sum();
    group.throughput(Throughput::Elements(numel as u64));
    // Every parameter gets a gradient of its own shape.
    for p in &params {
        let g = Tensor::from_slice(&gpu, p.value().shape(), &common::pattern(p.value().numel()));
        let g = Var::constant(g.unwrap());
        p.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
    }
    let optimisers: [(&str, Box<dyn Optimizer>); 3] = [
        (
            "sgd momentum",
            Box::new(
                Sgd::new(params.clone(), 0.01)
                    .momentum(0.9, false)
                    .weight_decay(1e-4),
            ),
        ),
        (
            "lars",
            Box::new(
                Sgd::lars(params.clone(), 0.15)
                    .momentum(0.9, false)
                    .weight_decay(1e-6),
            ),
        ),
        ("adam", Box::new(Adam::new(params.clone(), 1e-4))),
    ];
    for (name, mut optimiser) in optimisers {
        group.bench_function(name, |b| {
            b.iter(|| {
                optimiser.step().unwrap();
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
    let (model, params) = resnet18(&gpu);
    let mut sgd = Sgd::new(params, 0.01)
        .momentum(0.9, false)
        .weight_decay(1e-4);
    let shape = [16, 3, 64, 64];
    let pixels = common::pattern(shape.iter().product());
    let x = Var::constant(Tensor::from_slice(&gpu, &shape, &pixels).unwrap());
    let labels: Vec<usize> = (0..16).map(|i| i % 10).collect();
    group.bench_function("step", |b| {
        b.iter(|| {
            let loss = sgd
                .train_step(&mut || model.forward(&x, true)?.cross_entropy_classes(&labels))
                .unwrap();
            loss.value().to_vec().unwrap()[0]
        })
    });
    group.finish();
}

criterion_group!(benches, optimiser_updates, train_step);
criterion_main!(benches);
