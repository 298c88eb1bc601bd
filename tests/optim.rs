//! SGD, Adam and AdamW against torch.optim's, and LARS against lightning-bolts 0.5's
//! (golden values from tests/fixtures/optim/make_golden.py), over three or four steps; a
//! small ResNet that learns its batch.

mod common;

use std::path::Path;

use common::{Golden, gpu};
use lim::Tensor;
use lim::autograd::Var;
use lim::optim::{Adam, Lars, Optimizer, Sgd};

/// `steps` steps of the optimiser `make` builds over one parameter, each against the
/// golden one.
fn assert_steps_equal_torchs(
    name: &str,
    steps: usize,
    make: impl Fn(Vec<Var>) -> Box<dyn Optimizer>,
) {
    let gpu = gpu();
    let golden = Golden::open("optim/steps.safetensors");
    let start = golden.values(&format!("{name}.start"));
    let p = Var::param(Tensor::from_slice(&gpu, &[3, 4], &start).unwrap());
    let mut optimizer = make(vec![p.clone()]);
    for step in 0..steps {
        // A loss whose gradient is the golden one: sum(p * g).
        let g = Var::constant(
            Tensor::from_slice(&gpu, &[3, 4], &golden.values(&format!("grad{step}"))).unwrap(),
        );
        optimizer.train_step(&mut || p.mul(&g)?.sum_all()).unwrap();
        let want = golden.values(&format!("{name}.step{step}"));
        let got = p.value().to_vec().unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{name} step {step} [{i}]: lim {a}, torch {b}"
            );
        }
    }
}

/// A parameter without a gradient is not stepped, and its bias correction starts at its own
/// first step (PyTorch keeps `state["step"]` per parameter): after three steps of another
/// parameter, its first update is a fresh Adam's, `lr * g / |g|`.
#[test]
fn adam_counts_steps_per_parameter() {
    let gpu = gpu();
    let a = Var::param(Tensor::from_slice(&gpu, &[2], &[1.0, 2.0]).unwrap());
    let b = Var::param(Tensor::from_slice(&gpu, &[1], &[3.0]).unwrap());
    let mut adam = Adam::new(vec![a.clone(), b.clone()], 0.1);
    for _ in 0..3 {
        adam.train_step(&mut || a.mul(&a)?.sum_all()).unwrap();
    }
    assert_eq!(
        b.value().to_vec().unwrap(),
        vec![3.0],
        "no gradient, no step"
    );
    adam.train_step(&mut || b.mul(&b)?.sum_all()).unwrap();
    let b = b.value().to_vec().unwrap()[0];
    assert!(
        (b - 2.9).abs() < 1e-6,
        "{b}: a global step count gives 2.942"
    );
}

#[test]
fn sgd_steps_equal_pytorchs() {
    assert_steps_equal_torchs("plain", 3, |p| Box::new(Sgd::new(p, 0.1)));
    assert_steps_equal_torchs("momentum", 3, |p| {
        Box::new(Sgd::new(p, 0.1).momentum(0.9, false).weight_decay(5e-4))
    });
    assert_steps_equal_torchs("nesterov", 3, |p| {
        Box::new(Sgd::new(p, 0.05).momentum(0.9, true).weight_decay(1e-4))
    });
    assert_steps_equal_torchs("dampening", 3, |p| {
        let mut sgd = Sgd::new(p, 0.1).momentum(0.9, false);
        sgd.dampening = 0.5;
        Box::new(sgd)
    });
}

#[test]
fn adam_and_adamw_steps_equal_pytorchs() {
    assert_steps_equal_torchs("adam", 3, |p| {
        Box::new(Adam::new(p, 0.01).weight_decay(1e-3))
    });
    assert_steps_equal_torchs("adamw", 3, |p| Box::new(Adam::adamw(p, 0.01)));
}

/// The fourth golden gradient is zero, so every LARS run also takes bolts' unscaled branch.
#[test]
fn lars_steps_equal_lightning_bolts() {
    let paper = |p| Sgd::lars(p, 0.15).momentum(0.9, false).weight_decay(1e-6);
    assert_steps_equal_torchs("lars", 4, |p| Box::new(paper(p)));
    assert_steps_equal_torchs("lars_zero_start", 4, |p| Box::new(paper(p)));
    assert_steps_equal_torchs("lars_nesterov", 4, |p| {
        let mut lars = Sgd::lars(p, 0.1).momentum(0.9, true).weight_decay(1e-2);
        lars.lars = Some(Lars {
            trust_coefficient: 0.02,
            ..Lars::default()
        });
        Box::new(lars)
    });
    assert_steps_equal_torchs("lars_dampening", 4, |p| {
        let mut lars = Sgd::lars(p, 0.1).momentum(0.8, false).weight_decay(1e-3);
        lars.dampening = 0.3;
        Box::new(lars)
    });
    assert_steps_equal_torchs("lars_no_decay", 4, |p| {
        Box::new(Sgd::lars(p, 0.1).momentum(0.9, false))
    });
}

/// bolts' LARS step in f64: `buf` is None before the first step.
fn lars_reference(p: &mut [f64], g: &[f64], buf: &mut Option<Vec<f64>>, lr: f64, wd: f64) {
    let (momentum, trust, eps) = (0.9, 0.001, 1e-8);
    let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (p_norm, g_norm) = (norm(p), norm(g));
    let d: Vec<f64> = if wd != 0.0 && p_norm != 0.0 && g_norm != 0.0 {
        let lars = trust * p_norm / (g_norm + p_norm * wd + eps);
        g.iter()
            .zip(p.iter())
            .map(|(g, p)| (g + wd * p) * lars)
            .collect()
    } else {
        g.to_vec()
    };
    let b = match buf.take() {
        Some(b) => b.iter().zip(&d).map(|(b, d)| momentum * b + d).collect(),
        None => d,
    };
    for (p, b) in p.iter_mut().zip(&b) {
        *p -= lr * b;
    }
    *buf = Some(b);
}

/// Long parameters reduce their norms over many workgroups (capped at 256, so the longest
/// here also strides); checked against the f64 reference over two steps. The parameter is
/// large at its start and the gradient at its end, so a norm that missed a part would
/// change the LARS ratio, and the step (lr 50) is large enough to show it.
#[test]
fn lars_norms_span_workgroups() {
    let gpu = gpu();
    for (len, seed) in [(1, 1), (1000, 2), (70_001, 3), (600_001, 4)] {
        let ramp = |i: usize| i as f32 / len as f32;
        let start: Vec<f32> = common::random(len, seed)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (5.0 - 4.0 * ramp(i)))
            .collect();
        let p = Var::param(Tensor::from_slice(&gpu, &[len], &start).unwrap());
        let mut lars = Sgd::lars(vec![p.clone()], 50.0)
            .momentum(0.9, false)
            .weight_decay(1e-4);
        let mut want: Vec<f64> = start.iter().map(|&v| v as f64).collect();
        let mut buf = None;
        for step in 0..2 {
            let g: Vec<f32> = common::random(len, seed * 10 + step)
                .iter()
                .enumerate()
                .map(|(i, v)| v * (1.0 + 4.0 * ramp(i)))
                .collect();
            let gv = Var::constant(Tensor::from_slice(&gpu, &[len], &g).unwrap());
            lars.train_step(&mut || p.mul(&gv)?.sum_all()).unwrap();
            let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            lars_reference(&mut want, &g, &mut buf, 50.0, 1e-4);
            let got = p.value().to_vec().unwrap();
            common::assert_close(&format!("lars len {len} step {step}"), &got, &want, |i| {
                1e-5 * (1.0 + want[i].abs())
            });
        }
    }
}

/// A whole step (forward, backward, LARS) is recorded without waiting for the device and
/// goes out in as few submissions as the early flush allows; only reading the loss waits.
#[test]
fn a_training_step_never_waits_for_the_device() {
    use lim::Gpu;
    use lim::gpu::{FLUSH_EVERY, GpuOptions, Tuning};
    use lim::nn::{self, Arch, Random, ResNet, ResNetConfig};
    // Its own device, so other tests' work does not count; untuned, as tuning times kernels.
    let mut opts = GpuOptions::from_env().unwrap();
    opts.tuning = Tuning::Off;
    let gpu = Gpu::new(&opts).unwrap();
    let config = ResNetConfig {
        arch: Arch::ResNet18,
        in_channels: 1,
        width: 0.125,
        num_classes: Some(4),
    };
    let model = ResNet::new(config, &mut Random::new(&gpu, 5)).unwrap();
    let params = nn::parameters(&model);
    let mut lars = Sgd::lars(params, 0.15)
        .momentum(0.9, false)
        .weight_decay(1e-6);
    let images = common::random(4 * 16 * 16, 6);
    let x = Var::constant(Tensor::from_slice(&gpu, &[4, 1, 16, 16], &images).unwrap());
    for step in 0..2 {
        // Nothing pending, so the flushes fall at multiples of FLUSH_EVERY.
        gpu.sync().unwrap();
        let before = gpu.counters();
        let loss = lars
            .train_step(&mut || {
                model
                    .forward(&x, true)?
                    .cross_entropy_classes(&[0, 1, 2, 3])
            })
            .unwrap();
        let counts = gpu.counters() - before;
        assert_eq!(counts.waits, 0, "step {step}: {counts:?}");
        assert!(counts.dispatches > 200, "step {step}: {counts:?}");
        assert_eq!(
            counts.submissions,
            counts.dispatches / FLUSH_EVERY as u64,
            "step {step}: {counts:?}"
        );
        let before = gpu.counters();
        let value = loss.value().to_vec().unwrap()[0];
        assert!(value.is_finite());
        let read = gpu.counters() - before;
        assert_eq!(
            (read.waits, read.submissions),
            (1, 1),
            "step {step}: {read:?}"
        );
    }
}

/// Three SGD steps of a ResNet-18 at width 1/16 in training mode against PyTorch's
/// (tests/fixtures/torch/train_golden.py): the loss of each step, then every parameter,
/// running statistic and batch count.
#[test]
fn resnet_sgd_steps_equal_pytorchs() {
    use lim::nn::{self, Arch, ResNet, ResNetConfig, StateDict};
    let gpu = gpu();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let config = ResNetConfig {
        arch: Arch::ResNet18,
        in_channels: 3,
        width: 1.0 / 16.0,
        num_classes: Some(5),
    };
    let mut start = StateDict::load(&gpu, &fixtures.join("resnet_sgd_start.safetensors")).unwrap();
    let model = ResNet::new(config, &mut start).unwrap();
    start.finish().unwrap();
    let io = Golden::open("torch/resnet_sgd_io.safetensors");
    let x = Var::constant(io.upload(&gpu, "input"));
    let labels: Vec<usize> = io.ints("labels").iter().map(|&l| l as usize).collect();
    let params = nn::parameters(&model);
    let mut sgd = Sgd::new(params, 0.05)
        .momentum(0.9, false)
        .weight_decay(1e-4);
    let mut losses = Vec::new();
    for _ in 0..3 {
        let loss = sgd
            .train_step(&mut || model.forward(&x, true)?.cross_entropy_classes(&labels))
            .unwrap();
        losses.push(loss.value().to_vec().unwrap()[0]);
    }
    common::assert_relative("losses", &losses, &io.values("loss"), 1e-5);
    let end = Golden::open("torch/resnet_sgd_end.safetensors");
    common::assert_state_matches(&model, &end, |name, got, want| {
        common::assert_relative(name, got, want, 2e-5)
    });
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
    let params = nn::parameters(&model);
    let mut sgd = Sgd::new(params, 0.05).momentum(0.9, false);
    let images = common::random(8 * 16 * 16, 4);
    let x = Var::constant(Tensor::from_slice(&gpu, &[8, 1, 16, 16], &images).unwrap());
    let labels = [0, 1, 2, 3, 3, 2, 1, 0];
    let mut first = None;
    let mut last = f32::MAX;
    for step in 0..300 {
        let loss = sgd
            .train_step(&mut || model.forward(&x, true)?.cross_entropy_classes(&labels))
            .unwrap();
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

/// `lim bench train-step` names its adapter and reports a step's time and what the step
/// asks of the device: one wait (for the loss) and submissions only at the flush points.
#[test]
fn the_train_step_bench_reports_time_and_device_traffic() {
    let out = common::lim(&[
        "bench",
        "train-step",
        "--arch",
        "resnet18",
        "--size",
        "16",
        "--batch",
        "2",
        "--steps",
        "2",
        "--optimizer",
        "lars",
        "--tuning",
        "off",
        "--json",
    ]);
    let [line] = &common::json_lines(&out)[..] else {
        panic!("one JSON line")
    };
    assert_eq!(line["adapter"], gpu().info().name.as_str(), "{line}");
    assert_eq!(line["optimizer"], "lars", "{line}");
    assert_eq!(line["steps"], 2, "{line}");
    assert!(line["median_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["loss"].as_f64().unwrap().is_finite(), "{line}");
    assert_eq!(line["waits_per_step"], 1.0, "{line}");
    let dispatches = line["dispatches_per_step"].as_f64().unwrap();
    let submissions = line["submissions_per_step"].as_f64().unwrap();
    let flushes = (dispatches / lim::gpu::FLUSH_EVERY as f64).ceil();
    assert!(dispatches > 300.0 && submissions <= flushes + 1.0, "{line}");
}
