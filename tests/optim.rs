//! SGD against torch.optim.SGD (golden values from tests/fixtures/optim/make_golden.py):
//! plain, with momentum and weight decay, and Nesterov, over three steps.

mod common;

use std::path::Path;

use common::gpu;
use lim::Tensor;
use lim::autograd::Var;
use lim::optim::Sgd;

fn golden(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim/sgd.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn sgd_steps_equal_pytorchs() {
    let gpu = gpu();
    type Configure = fn(Sgd) -> Sgd;
    let configs: [(&str, Configure, f32); 3] = [
        ("plain", |s| s, 0.1),
        (
            "momentum",
            |s| s.momentum(0.9, false).weight_decay(5e-4),
            0.1,
        ),
        (
            "nesterov",
            |s| s.momentum(0.9, true).weight_decay(1e-4),
            0.05,
        ),
    ];
    for (name, configure, lr) in configs {
        let p = Var::param(Tensor::from_slice(&gpu, &[3, 4], &golden("start")).unwrap());
        let mut sgd = configure(Sgd::new(vec![p.clone()], lr));
        for step in 0..3 {
            // A loss whose gradient is the golden one: sum(p * g).
            let g = Var::constant(
                Tensor::from_slice(&gpu, &[3, 4], &golden(&format!("grad{step}"))).unwrap(),
            );
            sgd.zero_grad();
            p.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
            sgd.step().unwrap();
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
}
