//! ResNet-18 and ResNet-50 against torchvision on the same weights and input (golden values
//! in tests/fixtures/resnet, made by its make_golden.py from the same counter-based weights),
//! parameter names and shapes as torchvision's, and the safetensors round trip.

mod common;

use std::path::Path;

use common::{Golden, assert_relative, gpu};
use lim::Tensor;
use lim::autograd::Var;
use lim::eval::encoder::{Encoder, EncoderOptions};
use lim::nn::{self, Arch, Init, Random, ResNet, ResNetConfig, Source, StateDict};

/// Weights that depend on nothing but a tensor's name and shape, so that the golden values
/// survive any change to a random-number crate: element `i` of tensor `name` is
/// `splitmix64(fnv1a64(name) + (i + 1) * golden_gamma)` scaled to [0, 1), mapped into the
/// range below. make_golden.py computes the same bits with numpy.
/// - convolutions: U(-a, a) with a = sqrt(6 / fan_out), the variance of torchvision's
///   kaiming_normal_(mode="fan_out");
/// - the linear layer: U(-b, b), b = 1 / sqrt(fan_in), as `nn.Linear`;
/// - BatchNorm: scales and running variances in [0.5, 1.5), shifts and running means in
///   [-0.1, 0.1), so that evaluation-mode normalisation is far from the identity.
struct CounterWeights;

fn unit_interval(name: &str, i: u64) -> f64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let key = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    });
    let mut z = key.wrapping_add((i + 1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Source for CounterWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> lim::Result<Tensor> {
        let batch_norm =
            name.contains(".bn") || name.starts_with("bn") || name.contains("downsample.1");
        let (low, high) = match (batch_norm, name.rsplit('.').next(), init) {
            (true, Some("weight" | "running_var"), _) => (0.5, 1.5),
            (true, _, _) => (-0.1, 0.1),
            (false, _, Init::KaimingNormalFanOut) => {
                let fan_out = shape[0] * shape[2..].iter().product::<usize>();
                let a = (6.0 / fan_out as f64).sqrt();
                (-a, a)
            }
            (false, _, Init::Uniform(bound)) => (-bound as f64, bound as f64),
            (false, _, Init::Const(_)) => panic!("{name}: only BatchNorm starts constant"),
        };
        let n = shape.iter().product::<usize>() as u64;
        let values: Vec<f32> = (0..n)
            .map(|i| (low + (high - low) * unit_interval(name, i)) as f32)
            .collect();
        Tensor::from_slice(&gpu(), shape, &values)
    }

    fn count(&mut self, _name: &str) -> lim::Result<u64> {
        Ok(0)
    }
}

fn check_against_torchvision(arch: Arch, name: &str, classes: usize) {
    let gpu = gpu();
    let config = ResNetConfig {
        num_classes: Some(classes),
        ..ResNetConfig::torchvision(arch)
    };
    let model = ResNet::new(config, &mut CounterWeights).unwrap();
    let weights = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.safetensors"));
    nn::save(&model, &weights).unwrap();

    let io = Golden::open(&format!("resnet/{name}_io.safetensors"));
    let x = Var::constant(io.upload(&gpu, "input"));
    let features = model.features(&x, false).unwrap();
    let logits = model.forward(&x, false).unwrap();
    let (fshape, want_features) = io.tensor("features");
    assert_eq!(features.shape(), fshape);
    assert_relative(
        &format!("{name} features"),
        &features.value().to_vec().unwrap(),
        &want_features,
        1e-4,
    );
    let want_logits = io.values("logits");
    assert_relative(
        &format!("{name} logits"),
        &logits.value().to_vec().unwrap(),
        &want_logits,
        1e-4,
    );

    // What lim wrote loads back into the same network under the same names.
    let mut state = StateDict::load(&gpu, &weights).unwrap();
    let again = ResNet::new(config, &mut state).unwrap();
    state.finish().unwrap();
    let logits_again = again.forward(&x, false).unwrap().value().to_vec().unwrap();
    assert_eq!(logits_again, logits.value().to_vec().unwrap());
}

#[test]
fn resnet18_matches_torchvision() {
    check_against_torchvision(Arch::ResNet18, "resnet18", 10);
}

#[test]
fn resnet50_matches_torchvision() {
    check_against_torchvision(Arch::ResNet50, "resnet50", 10);
}

#[test]
fn names_and_shapes_are_torchvisions() {
    let gpu = gpu();
    let model = ResNet::new(
        ResNetConfig::torchvision(Arch::ResNet18),
        &mut Random::new(&gpu, 1),
    )
    .unwrap();
    let params = nn::named_parameters(&model);
    // torchvision's resnet18 has 62 parameter tensors and 11,689,512 parameters.
    assert_eq!(params.len(), 62);
    let count: usize = params.iter().map(|(_, v)| v.value().numel()).sum();
    assert_eq!(count, 11_689_512);
    assert_eq!(params[0].0, "conv1.weight");
    assert_eq!(params.last().unwrap().0, "fc.bias");
    assert!(
        params
            .iter()
            .any(|(n, v)| n == "layer2.0.downsample.0.weight" && v.shape() == [128, 64, 1, 1])
    );
    let r50 = ResNet::new(
        ResNetConfig::torchvision(Arch::ResNet50),
        &mut Random::new(&gpu, 1),
    )
    .unwrap();
    let count: usize = nn::named_parameters(&r50)
        .iter()
        .map(|(_, v)| v.value().numel())
        .sum();
    assert_eq!(count, 25_557_032, "torchvision's resnet50");
    assert_eq!(r50.feature_len(), 2048);
}

#[test]
fn a_state_dict_that_does_not_fit_is_refused_by_name() {
    let gpu = gpu();
    let small = ResNetConfig {
        arch: Arch::ResNet18,
        in_channels: 1,
        width: 0.125,
        num_classes: Some(3),
    };
    let model = ResNet::new(small, &mut Random::new(&gpu, 2)).unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("small-resnet.safetensors");
    nn::save(&model, &path).unwrap();
    let other = ResNetConfig {
        num_classes: Some(4),
        ..small
    };
    let err = ResNet::new(other, &mut StateDict::load(&gpu, &path).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("fc.weight has shape [3, 64]") && err.contains("small-resnet"),
        "{err}"
    );
    let headless = ResNetConfig {
        num_classes: None,
        ..small
    };
    let mut state = StateDict::load(&gpu, &path).unwrap();
    ResNet::new(headless, &mut state).unwrap();
    let err = state.finish().unwrap_err().to_string();
    assert!(
        err.contains("fc.bias") && err.contains("unexpected"),
        "{err}"
    );
}

#[test]
fn the_embed_command_writes_features_in_input_order() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hash_images");
    let (a, b) = (
        images.join("rgb_300x200.png"),
        images.join("tall_40x300.png"),
    );
    let bad = images.join("hashes.tsv");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed.npy");
    let args = [&a, &b, &bad, &a].map(|p| p.to_str().unwrap().to_string());
    let out_arg = out.to_str().unwrap().to_string();
    let command = ["embed", "--arch", "resnet18", "--out"].map(String::from);
    let run = common::lim(&[&command[..], &[out_arg], &args].concat());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("hashes.tsv"),
        "the bad file is named"
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'shape': (3, 512)"),
        "{header}"
    );
    assert_eq!(
        (10 + header_len) % 64,
        0,
        "npy headers are padded to 64 bytes"
    );
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let rows: Vec<&[f32]> = values.chunks(512).collect();
    assert_eq!(rows.len(), 3);
    assert!(
        values.iter().all(|v| v.is_finite() && *v >= 0.0),
        "pooled ReLU outputs"
    );
    assert_eq!(rows[0], rows[2], "the same image, the same features");
    assert_ne!(rows[0], rows[1]);
    let listed = std::fs::read_to_string(out.with_extension("npy.txt")).unwrap();
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(listed, [&args[0], &args[1], &args[3]]);
    let failures = common::failures_file(&out.with_extension("failures.jsonl"));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].input.to_str(), Some(args[2].as_str()));
}

#[test]
fn embed_files_batches_by_size_keeps_order_and_names_bad_files() {
    let gpu = gpu();
    let encoder = Encoder::load(
        &gpu,
        &EncoderOptions {
            width: Some(0.125),
            seed: 3,
            ..EncoderOptions::default()
        },
    )
    .unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hash_images");
    let [rgb, tall, bad, grey] = [
        "rgb_300x200.png",
        "tall_40x300.png",
        "hashes.tsv",
        "gray16_120x90.png",
    ]
    .map(|f| images.join(f));
    let paths = [rgb.clone(), tall.clone(), bad, rgb, grey.clone()];
    let all = encoder.embed_files(&gpu, &paths).unwrap();
    assert_eq!(all.len(), 5);
    let err = all[2].as_ref().unwrap_err().to_string();
    assert!(err.contains("hashes.tsv"), "{err}");
    let features: Vec<&Vec<f32>> = [0, 1, 3, 4].map(|i| all[i].as_ref().unwrap()).to_vec();
    assert!(
        features
            .iter()
            .all(|f| f.len() == encoder.model.feature_len())
    );
    assert_eq!(
        features[0], features[2],
        "the same image, the same features"
    );
    assert_ne!(features[0], features[1]);
    // Batching by size changes nothing: each image alone gives its features in the batch.
    for (path, want) in [(&tall, features[1]), (&grey, features[3])] {
        let alone = encoder
            .embed_files(&gpu, std::slice::from_ref(path))
            .unwrap();
        assert_relative("alone", alone[0].as_ref().unwrap(), want, 1e-5);
    }

    // A 16-bit grey image: v / 65535, replicated to three channels, normalised per channel.
    let planes = encoder.planes(&grey).unwrap();
    let pixels = lim::data::GreyImage::open(&grey).unwrap();
    assert_eq!((planes.width, planes.height), (120, 90));
    let area = 120 * 90;
    for c in 0..3 {
        for i in [0, 4321, area - 1] {
            let v = pixels.pixels[i] as f32 / 65535.0;
            let want = (v - encoder.mean[c]) / encoder.std[c];
            assert!((planes.values[c * area + i] - want).abs() < 1e-5, "{c} {i}");
        }
    }
}
