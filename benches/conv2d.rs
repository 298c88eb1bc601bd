//! conv2d on ResNet-18's layer shapes at batch 16 and 64 x 64 input (the peers' setting):
//! forward and both gradients, every variant; throughput is in FLOP/s.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::ops::conv2d::{Conv2dDims, ConvVariant, RESNET18_B16_64PX};
use lim::{DType, Tensor};

fn conv2d(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group(common::group_name("conv2d resnet18 b16 64px", &gpu));
    group.sample_size(10);
    for layer in RESNET18_B16_64PX {
        let (name, x_shape, w_shape, spec) = (layer.name, layer.x, layer.w, layer.spec);
        let d = Conv2dDims::infer(&x_shape, &w_shape, spec).unwrap();
        let x =
            Tensor::from_slice(&gpu, &x_shape, &common::pattern(x_shape.iter().product())).unwrap();
        let w =
            Tensor::from_slice(&gpu, &w_shape, &common::pattern(w_shape.iter().product())).unwrap();
        let g = Tensor::from_slice(
            &gpu,
            &d.out_shape(),
            &common::pattern(d.out_shape().iter().product()),
        )
        .unwrap();
        group.throughput(Throughput::Elements(d.flops() as u64));
        for v in ConvVariant::ALL {
            let id = |pass: &str| BenchmarkId::new(format!("{pass} {}", v.name()), name);
            group.bench_function(id("forward"), |b| {
                b.iter(|| {
                    let y = x.conv2d_with(&w, spec, v, DType::F32).unwrap();
                    gpu.sync().unwrap();
                    y
                })
            });
            group.bench_function(id("input grad"), |b| {
                b.iter(|| {
                    let dx = g
                        .conv2d_backward_input_with(&w, &x_shape, spec, v, DType::F32)
                        .unwrap();
                    gpu.sync().unwrap();
                    dx
                })
            });
            group.bench_function(id("weight grad"), |b| {
                b.iter(|| {
                    let dw = g
                        .conv2d_backward_weight_with(&x, &w_shape, spec, v, DType::F32)
                        .unwrap();
                    gpu.sync().unwrap();
                    dw
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, conv2d);
criterion_main!(benches);
