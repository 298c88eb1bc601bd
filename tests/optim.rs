//! SGD, Adam and AdamW against torch.optim's (golden values from
//! tests/fixtures/optim/make_golden.py) over three steps; a small ResNet that learns its
//! batch.

mod common;

use std::path::Path;

use common::gpu;
use lim::Tensor;
use lim::autograd::Var;
use lim::optim::{Adam, Optimizer, Sgd};

fn golden(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim/steps.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Three steps of the optimiser `make` builds over one parameter, each against torch's.
fn assert_steps_equal_torchs(name: &str, make: impl Fn(Vec<Var>) -> Box<dyn Optimizer>) {
    let gpu = gpu();
    let p = Var::param(Tensor::from_slice(&gpu, &[3, 4], &golden("start")).unwrap());
    let mut optimizer = make(vec![p.clone()]);
    for step in 0..3 {
        // A loss whose gradient is the golden one: sum(p * g).
        let g = Var::constant(
            Tensor::from_slice(&gpu, &[3, 4], &golden(&format!("grad{step}"))).unwrap(),
        );
        optimizer.zero_grad();
        p.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        optimizer.step().unwrap();
        let want = golden(&format!("{name}.step{step}"));
        let got = p.value().to_vec().unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{name} step {step} [{i}]: lim {a}, torch {b}"
            );
        }
    }
}

#[test]
fn sgd_steps_equal_pytorchs() {
    assert_steps_equal_torchs("plain", |p| Box::new(Sgd::new(p, 0.1)));
    assert_steps_equal_torchs("momentum", |p| {
        Box::new(Sgd::new(p, 0.1).momentum(0.9, false).weight_decay(5e-4))
    });
    assert_steps_equal_torchs("nesterov", |p| {
        Box::new(Sgd::new(p, 0.05).momentum(0.9, true).weight_decay(1e-4))
    });
}

#[test]
fn adam_and_adamw_steps_equal_pytorchs() {
    assert_steps_equal_torchs("adam", |p| Box::new(Adam::new(p, 0.01).weight_decay(1e-3)));
    assert_steps_equal_torchs("adamw", |p| Box::new(Adam::adamw(p, 0.01)));
}

#[test]
fn a_small_resnet_learns_its_batch_by_heart() {
    use lim::nn::{self, Arch, Random, ResNet, ResNetConfig};
    let gpu = gpu();
    let config = ResNetConfig {
        arch: Arch::ResNet18,
        in_channels: 1,
        width: 0.125,
        num_classes: Some(4),
    };
    let model = ResNet::new(config, &mut Random::new(&gpu, 3)).unwrap();
    let params = nn::parameters(&model).into_iter().map(|(_, v)| v).collect();
    let mut sgd = Sgd::new(params, 0.05).momentum(0.9, false);
    let images = common::random(8 * 16 * 16, 4);
    let x = Var::constant(Tensor::from_slice(&gpu, &[8, 1, 16, 16], &images).unwrap());
    let labels = [0, 1, 2, 3, 3, 2, 1, 0];
    let mut first = None;
    let mut last = f32::MAX;
    for step in 0..300 {
        sgd.zero_grad();
        let loss = model
            .forward(&x, true)
            .unwrap()
            .cross_entropy_classes(&labels)
            .unwrap();
        loss.backward().unwrap();
        sgd.step().unwrap();
        if step == 0 || step % 20 == 19 {
            last = loss.value().to_vec().unwrap()[0];
            let start = *first.get_or_insert(last);
            if last < 0.01 * start {
                break;
            }
        }
    }
    let first = first.unwrap();
    assert!(last < 0.01 * first, "loss went from {first} to {last}");
}
