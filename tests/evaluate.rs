//! Downstream evaluation: the data set readers and their errors, the linear probe, and
//! `lim evaluate`'s outputs on the committed PneumoniaMNIST subset.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use lim::eval::dataset::{Dataset, SPLITS};
use lim::eval::metrics::argmax;
use lim::eval::probe::{Features, Probe, ProbeOptions};

const PNEUMONIA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/pneumoniamnist-subset.npz"
);

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("evaluate-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn error_of(path: &Path) -> String {
    Dataset::open(path, 0).unwrap_err().to_string()
}

/// An `.npz` of uint8 arrays, as `np.savez` writes it.
fn write_npz(path: &Path, arrays: &[(&str, &[usize], &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, shape, data) in arrays {
        let dims: Vec<String> = shape.iter().map(|d| format!("{d},")).collect();
        let header = format!(
            "{{'descr': '|u1', 'fortran_order': False, 'shape': ({}), }}\n",
            dims.join(" ")
        );
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(b"\x93NUMPY\x01\x00").unwrap();
        zip.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
        zip.write_all(header.as_bytes()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

fn write_png(path: &Path, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(12, 10, |x, y| {
        image::Luma([value.wrapping_add((x * y) as u8)])
    })
    .save(path)
    .unwrap();
}

#[test]
fn medmnist_npz_opens_with_its_splits() {
    let data = Dataset::open(Path::new(PNEUMONIA), 0).unwrap();
    assert_eq!(data.classes, ["0", "1"]);
    let sizes: Vec<usize> = data.splits.iter().map(Vec::len).collect();
    assert_eq!(sizes, [600, 524, 624]);
    let normal = data.split("test").iter().filter(|s| s.label == 0).count();
    assert_eq!(
        normal, 234,
        "the test split's normal X-rays (data/README.md)"
    );
    // The training split is sorted by class: a limit draws at random, keeping each class's
    // share (60 of 600 normal: 5 of 50).
    for seed in 0..20 {
        let mut small = data.clone();
        small.limit(50, seed).unwrap();
        assert!(small.splits.iter().all(|s| s.len() == 50));
        let normal = small.split("train").iter().filter(|s| s.label == 0).count();
        assert_eq!(normal, 5, "seed {seed}");
        let ids: Vec<usize> = small
            .split("train")
            .iter()
            .map(|s| s.id.parse().unwrap())
            .collect();
        assert!(ids.is_sorted(), "in their order");
    }
}

#[test]
fn npz_errors_name_the_file_and_the_problem() {
    let dir = temp_dir("npz");
    let images = [0u8; 2 * 4];
    let path = dir.join("no-val.npz");
    write_npz(
        &path,
        &[
            ("train_images", &[2, 2, 2], &images),
            ("train_labels", &[2, 1], &[0, 1]),
            ("test_images", &[2, 2, 2], &images),
            ("test_labels", &[2, 1], &[0, 1]),
        ],
    );
    let e = error_of(&path);
    assert!(
        e.contains("no-val.npz") && e.contains("no `val_images`"),
        "{e}"
    );
    // RGB images, [N, H, W, 3], with labels [N].
    let rgb = dir.join("rgb.npz");
    let images = [9u8; 2 * 2 * 2 * 3];
    let mut arrays: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for split in SPLITS {
        arrays.push((format!("{split}_images"), vec![2, 2, 2, 3], images.to_vec()));
        arrays.push((format!("{split}_labels"), vec![2], vec![1, 0]));
    }
    let refs: Vec<(&str, &[usize], &[u8])> = arrays
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    write_npz(&rgb, &refs);
    let data = Dataset::open(&rgb, 0).unwrap();
    assert!(matches!(
        data.split("test")[0].pixels,
        lim::eval::dataset::Pixels::Array {
            channels: 3,
            height: 2,
            width: 2,
            ..
        }
    ));
    assert_eq!(data.split("val")[0].label, 1);
    let path = dir.join("absent.npz");
    let split = |n: &'static str, labels: &'static [u8]| {
        [
            (format!("{n}_images"), labels),
            (format!("{n}_labels"), labels),
        ]
    };
    let mut arrays = Vec::new();
    for (n, labels) in [
        ("train", &[0u8, 1][..]),
        ("val", &[0, 1]),
        ("test", &[1, 1]),
    ] {
        arrays.push(split(n, labels));
    }
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = arrays
        .iter()
        .flat_map(|s| s.iter().cloned())
        .map(|(name, labels)| {
            if name.ends_with("images") {
                (name, vec![2, 2, 2], vec![7; 8])
            } else {
                (name, vec![2], labels.to_vec())
            }
        })
        .collect();
    let refs: Vec<(&str, &[usize], &[u8])> = owned
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    write_npz(&path, &refs);
    let e = error_of(&path);
    assert!(
        e.contains("class `0` has no sample in the test split"),
        "{e}"
    );
    std::fs::write(dir.join("text.npz"), "not a zip").unwrap();
    assert!(error_of(&dir.join("text.npz")).contains("not an .npz"));
    assert!(error_of(&dir.join("data.txt")).contains("a MedMNIST .npz, a labels .csv or a folder"));
}

#[test]
fn folders_and_csv_open_with_clear_errors() {
    let dir = temp_dir("folders");
    for (split, class, n) in [
        ("train", "with", 10),
        ("train", "without", 10),
        ("test", "with", 2),
        ("test", "without", 2),
    ] {
        for i in 0..n {
            write_png(&dir.join(format!("tree/{split}/{class}/{i}.png")), i as u8);
        }
    }
    let data = Dataset::open(&dir.join("tree"), 0).unwrap();
    assert_eq!(data.classes, ["with", "without"]);
    // The validation split is a seeded 15 % of train.
    let sizes: Vec<usize> = data.splits.iter().map(Vec::len).collect();
    assert_eq!(sizes, [17, 3, 4]);
    write_png(&dir.join("tree/test/other/0.png"), 1);
    let e = error_of(&dir.join("tree"));
    assert!(
        e.contains("class `other` is not one of the training classes") && e.contains("other/0.png"),
        "{e}"
    );
    let e = error_of(&dir.join("tree/train"));
    assert!(e.contains("no `train/` folder"), "{e}");

    let rows = [
        "path,label,split",
        "tree/train/with/0.png,with,train",
        "tree/train/without/0.png,without,train",
        "tree/train/with/1.png,with,val",
        "tree/train/without/1.png,without,val",
        "tree/test/with/0.png,with,test",
        "tree/test/without/0.png,without,test",
    ];
    std::fs::write(dir.join("labels.csv"), rows.join("\n")).unwrap();
    let data = Dataset::open(&dir.join("labels.csv"), 0).unwrap();
    assert_eq!(
        data.splits.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 2]
    );
    assert!(data.split("val")[0].id.ends_with("tree/train/with/1.png"));
    std::fs::write(dir.join("absent.csv"), rows[..6].join("\n")).unwrap();
    let e = error_of(&dir.join("absent.csv"));
    assert!(
        e.contains("absent.csv") && e.contains("class `without` has no sample in the test split"),
        "{e}"
    );
    std::fs::write(
        dir.join("missing.csv"),
        format!("{}\nnowhere.png,with,train", rows.join("\n")),
    )
    .unwrap();
    assert!(
        error_of(&dir.join("missing.csv")).contains("line 8: ")
            && error_of(&dir.join("missing.csv")).contains("nowhere.png does not exist")
    );
    std::fs::write(dir.join("header.csv"), "file,class\na.png,0").unwrap();
    assert!(error_of(&dir.join("header.csv")).contains("needs `path` and `label`"));
    std::fs::write(
        dir.join("split.csv"),
        format!("{}\ntree/test/with/1.png,with,holdout", rows.join("\n")),
    )
    .unwrap();
    assert!(error_of(&dir.join("split.csv")).contains("split `holdout` is not train, val or test"));
}

/// Two classes apart along one direction of 16 noisy dimensions.
fn separable(n: usize, seed: u64) -> Features {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let values = labels
        .iter()
        .flat_map(|&y| (0..16).map(move |d| (d, y)).collect::<Vec<_>>())
        .map(|(d, y)| noise() + if d == 3 { y as f32 * 2.0 - 1.0 } else { 0.0 } + 5.0)
        .collect();
    Features {
        dim: 16,
        values,
        labels,
        ids: (0..n).map(|i| i.to_string()).collect(),
        failed: Vec::new(),
    }
}

#[test]
fn the_probe_learns_and_keeps_its_best_epoch() {
    let gpu = common::gpu();
    let (train, val) = (separable(64, 1), separable(40, 2));
    let options = ProbeOptions {
        epochs: 15,
        batch: 16,
        lr: 0.05,
        weight_decay: 0.0,
        seed: 3,
    };
    let mut log = Vec::new();
    let probe = Probe::train(&gpu, &train, &val, 2, &options, &mut |e| {
        log.push(e.clone())
    })
    .unwrap();
    assert_eq!(log.len(), 15);
    assert!(log.last().unwrap().loss < log[0].loss / 2.0, "{log:?}");
    let best = log.iter().map(|e| e.val_accuracy).fold(0.0, f64::max);
    assert_eq!(probe.best_val_accuracy, best);
    assert_eq!(
        probe.best_epoch,
        log.iter().position(|e| e.val_accuracy == best).unwrap()
    );
    assert!(best >= 0.95, "{log:?}");
    // Its probabilities are the best epoch's: they reproduce its validation accuracy.
    let p = probe.probabilities(&val.values).unwrap();
    let correct = p
        .chunks(2)
        .zip(&val.labels)
        .filter(|(row, y)| argmax(row) == **y)
        .count();
    assert_eq!(correct as f64 / 40.0, best);
    assert!(p.chunks(2).all(|row| (row[0] + row[1] - 1.0).abs() < 1e-6));
}

#[test]
fn evaluate_writes_its_report() {
    let dir = temp_dir("cli");
    let out = dir.join("out");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--tuning", "off", "evaluate", "--init", "random", "--arch", "resnet18", "--width",
            "0.125", "--size", "32", "--mean", "0.5", "--std", "0.5",
        ];
        args.extend_from_slice(extra);
        common::lim(&args)
    };
    // 40 images a split, 3 epochs, 2 repeats.
    let small = |out: &Path| {
        let out = out.to_str().unwrap();
        run(&[
            "--limit",
            "40",
            "--epochs",
            "3",
            "--batch",
            "16",
            "--repeats",
            "2",
            "--out",
            out,
            PNEUMONIA,
        ])
    };
    let output = small(&out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("test: ") && stdout.contains("auc "),
        "{stdout}"
    );

    let report = common::report(&out);
    assert_eq!(report["protocol"], "linear");
    assert_eq!(report["weights"], "random");
    assert_eq!(report["repeats"].as_array().unwrap().len(), 2);
    for split in ["val", "test"] {
        for metric in ["auc", "accuracy", "f1", "precision", "recall"] {
            let s = &report["summary"][split][metric];
            assert!(
                s["mean"].as_f64().unwrap() >= 0.0 && s["std"].as_f64().unwrap() >= 0.0,
                "{split} {metric}: {s}"
            );
        }
        assert!(report["repeats"][1]["splits"][split]["auc_ci95"].is_array());
    }

    // predictions.csv: a row per repeat and val/test image, whose argmax gives the accuracy.
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,split,repeat,label,p_0,p_1"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 2 * 40);
    for repeat in ["0", "1"] {
        let test: Vec<&Vec<&str>> = rows
            .iter()
            .filter(|r| r[1] == "test" && r[2] == repeat)
            .collect();
        let correct = test.iter().filter(|r| {
            let p: Vec<f64> = r[4..].iter().map(|v| v.parse().unwrap()).collect();
            argmax(&p).to_string() == r[3]
        });
        let accuracy = correct.count() as f64 / test.len() as f64;
        let want =
            report["repeats"][repeat.parse::<usize>().unwrap()]["splits"]["test"]["accuracy"]
                .as_f64()
                .unwrap();
        assert_eq!(accuracy, want, "repeat {repeat}");
    }
    let log = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2 * 3, "an entry per repeat and epoch");
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(first["loss"].as_f64().unwrap() > 0.0 && first["val_accuracy"].is_number());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## test (2 repeats)") && md.contains("| auc |") && md.contains("roc.png"),
        "{md}"
    );
    let roc = image::open(out.join("roc.png")).unwrap();
    assert!(roc.width() > 300 && roc.height() > 200);

    // The same seed gives the same report; a missing choice of weights is an error.
    let again = dir.join("again");
    assert!(small(&again).status.success());
    assert_eq!(
        std::fs::read(again.join("predictions.csv")).unwrap(),
        csv.as_bytes()
    );
    let none = common::lim(&["evaluate", "--out", again.to_str().unwrap(), PNEUMONIA]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--weights"));
}

#[test]
fn evaluate_reports_unreadable_images_and_carries_on() {
    let dir = temp_dir("unreadable");
    let mut rows = vec!["path,label,split".to_string()];
    for (i, split) in SPLITS.iter().enumerate() {
        for class in ["a", "b"] {
            for k in 0..3 {
                let file = format!("{split}/{class}{k}.png");
                write_png(
                    &dir.join(&file),
                    (i * 40 + k * 10) as u8 + if class == "a" { 0 } else { 120 },
                );
                rows.push(format!("{file},{class},{split}"));
            }
        }
    }
    std::fs::write(dir.join("test/b2.png"), "not a png").unwrap();
    std::fs::write(dir.join("labels.csv"), rows.join("\n")).unwrap();
    let out = dir.join("out");
    let output = common::lim(&[
        "--tuning",
        "off",
        "evaluate",
        "--init",
        "random",
        "--width",
        "0.125",
        "--size",
        "32",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        dir.join("labels.csv").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("b2.png") && stderr.contains("cannot decode"),
        "{stderr}"
    );
    let report = common::report(&out);
    assert_eq!(report["samples"]["test"], 5);
    let unreadable = common::as_failures(report["unreadable"].as_array().unwrap().clone());
    assert_eq!(unreadable.len(), 1);
    assert!(
        unreadable[0].input.ends_with("test/b2.png"),
        "{unreadable:?}"
    );
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch");

/// A checkpoint `torch.save` wrote as the paper's Lightning pre-training did reads as the
/// state dict PyTorch holds, bit for bit, and evaluates.
#[test]
fn a_pytorch_lightning_checkpoint_reads_and_evaluates() {
    use lim::io::torch::{Values, load_state_dict};
    let ckpt = Path::new(FIXTURES).join("swav_lightning.ckpt");
    let read = load_state_dict(&ckpt).unwrap();
    // A plain torch.save(state_dict) of the backbone reads as the same tensors.
    let plain = load_state_dict(&Path::new(FIXTURES).join("resnet18_w16.pt")).unwrap();
    assert_eq!(
        plain.len(),
        read.len() - 3,
        "all but the head and prototypes"
    );
    for tensor in &plain {
        assert!(read.contains(tensor), "{}", tensor.0);
    }
    let expected =
        std::fs::read(Path::new(FIXTURES).join("swav_lightning_expected.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&expected).unwrap();
    assert_eq!(read.len(), expected.len());
    for (name, shape, values) in &read {
        let want = expected
            .tensor(name)
            .unwrap_or_else(|_| panic!("{name} is not expected"));
        assert_eq!(shape.as_slice(), want.shape(), "{name}");
        match values {
            Values::F32(v) => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                assert!(bytes == want.data(), "{name}: values differ");
            }
            Values::I64(v) => assert_eq!(
                v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
                want.data(),
                "{name}"
            ),
        }
    }

    let dir = temp_dir("torch");
    let out = dir.join("out");
    let args = [
        "--tuning",
        "off",
        "evaluate",
        "--weights",
        ckpt.to_str().unwrap(),
        "--arch",
        "resnet18",
        "--width",
        "0.0625",
        "--size",
        "32",
        "--limit",
        "20",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        PNEUMONIA,
    ];
    let output = common::lim(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = common::report(&out);
    assert_eq!(report["weights"], ckpt.to_str().unwrap());
    // The wrong width is refused by name.
    let wrong: Vec<&str> = args
        .iter()
        .map(|a| if *a == "0.0625" { "0.125" } else { a })
        .collect();
    let output = common::lim(&wrong);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("swav_lightning.ckpt")
            && stderr.contains("conv1.weight has shape [4, 3, 7, 7]"),
        "{stderr}"
    );
}

#[test]
fn a_zip_that_is_not_a_checkpoint_is_refused() {
    let dir = temp_dir("not-torch");
    let path = dir.join("other.pt");
    write_npz(&path, &[("x", &[1], &[0])]);
    let e = lim::io::torch::load_state_dict(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("other.pt") && e.contains("no data.pkl"), "{e}");
    std::fs::write(&path, b"PK\x03\x04 truncated").unwrap();
    let e = lim::io::torch::load_state_dict(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a PyTorch zip checkpoint"), "{e}");
}

/// The paper's schedule as its Lightning callback ran it: convolutions frozen for 10 epochs
/// at 1e-4, everything at 1e-4 in epoch 10, then 2e-5.
#[test]
fn the_paper_schedule_freezes_then_lowers_the_rate() {
    use lim::eval::finetune::FinetuneOptions;
    let paper = FinetuneOptions {
        epochs: 70,
        batch: 64,
        lr: 1e-4,
        weight_decay: 5e-4,
        seed: 0,
        freeze_epochs: 10,
        later_lr: Some(2e-5),
    };
    assert_eq!(paper.epoch(0), (1e-4, false));
    assert_eq!(paper.epoch(9), (1e-4, false));
    assert_eq!(paper.epoch(10), (1e-4, true));
    assert_eq!(paper.epoch(11), (2e-5, true));
    assert_eq!(paper.epoch(69), (2e-5, true));
    let plain = FinetuneOptions {
        freeze_epochs: 0,
        later_lr: None,
        ..paper
    };
    assert_eq!(plain.epoch(0), (1e-4, true));
    assert_eq!(plain.epoch(50), (1e-4, true));
}

/// While frozen, the convolutions keep their weights and BatchNorm and the classifier train;
/// once open, everything trains. The tested weights are the best epoch's.
#[test]
fn finetuning_freezes_convolutions_then_trains_everything() {
    use lim::eval::dataset::Transform;
    use lim::eval::encoder::{Encoder, EncoderOptions};
    use lim::eval::finetune::{self, FinetuneOptions};
    let gpu = common::gpu();
    let mut data = Dataset::open(Path::new(PNEUMONIA), 0).unwrap();
    data.limit(24, 0).unwrap();
    let options = EncoderOptions {
        arch: Some("resnet18".into()),
        width: Some(0.0625),
        seed: 5,
        classes: Some(2),
        ..Default::default()
    };
    let model = Encoder::load(&gpu, &options).unwrap().model;
    let snapshot = |m: &lim::nn::ResNet| -> Vec<(String, Vec<f32>)> {
        lim::nn::named_parameters(m)
            .into_iter()
            .map(|(n, p)| (n, p.value().to_vec().unwrap()))
            .collect()
    };
    let start = snapshot(&model);
    let t = Transform {
        channels: 3,
        size: 16,
        mean: vec![0.5; 3],
        std: vec![0.5; 3],
    };
    let dir = temp_dir("finetune");
    let best = dir.join("best.safetensors");
    let train = |epochs: usize, freeze_epochs: usize, log: &mut Vec<lim::eval::probe::EpochLog>| {
        let o = FinetuneOptions {
            epochs,
            batch: 8,
            lr: 1e-2,
            weight_decay: 0.0,
            seed: 1,
            freeze_epochs,
            later_lr: None,
        };
        finetune::train(
            &gpu,
            &model,
            &data.splits[0],
            &data.splits[1],
            &t,
            &o,
            &best,
            &mut |e| log.push(e.clone()),
        )
        .unwrap()
    };
    let mut log = Vec::new();
    train(1, 1, &mut log);
    let frozen = snapshot(&model);
    for ((name, before), (_, after)) in start.iter().zip(&frozen) {
        let is_conv =
            name.ends_with("weight") && (name.contains("conv") || name.contains("downsample.0"));
        assert_eq!(before == after, is_conv, "{name}: frozen convolutions only");
    }
    let done = train(2, 0, &mut log);
    let open = snapshot(&model);
    assert!(
        frozen.iter().zip(&open).all(|(a, b)| a.1 != b.1),
        "everything trains once open"
    );
    // The saved weights are the best epoch's of the second call: they give its accuracy.
    let best_epoch = log[1..].iter().map(|e| e.val_accuracy).fold(0.0, f64::max);
    assert_eq!(done.best_val_accuracy, best_epoch);
    let reloaded = finetune::reload(&gpu, &model, &best).unwrap();
    let (p, kept, failed) = finetune::predict(&gpu, &reloaded, &data.splits[1], &t, 5).unwrap();
    assert!(failed.is_empty() && kept.len() == 24);
    let correct = p
        .chunks(2)
        .zip(&kept)
        .filter(|(row, i)| argmax(row) == data.splits[1][**i].label)
        .count();
    assert_eq!(correct as f64 / 24.0, done.best_val_accuracy);
}

#[test]
fn evaluate_finetunes_with_the_paper_protocol() {
    let dir = temp_dir("paper");
    let out = dir.join("out");
    let output = common::lim(&[
        "--tuning",
        "off",
        "evaluate",
        "--protocol",
        "paper",
        "--init",
        "random",
        "--arch",
        "resnet18",
        "--width",
        "0.0625",
        "--size",
        "16",
        "--limit",
        "20",
        "--epochs",
        "2",
        "--freeze-epochs",
        "1",
        "--batch",
        "10",
        "--out",
        out.to_str().unwrap(),
        PNEUMONIA,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = common::report(&out);
    assert_eq!(report["protocol"], "paper");
    let settings = &report["settings"];
    assert_eq!(
        (
            settings["lr"].as_f64(),
            settings["weight_decay"].as_f64(),
            settings["later_lr"].as_f64()
        ),
        (Some(1e-4), Some(5e-4), Some(2e-5))
    );
    assert_eq!(
        (
            settings["freeze_epochs"].as_u64(),
            settings["epochs"].as_u64(),
            settings["size"].as_u64()
        ),
        (Some(1), Some(2), Some(16))
    );
    let repeat = &report["repeats"][0];
    assert_eq!(
        repeat["best_val_accuracy"], repeat["splits"]["val"]["accuracy"],
        "the tested weights are the best epoch's"
    );
    assert!(out.join("best-0.safetensors").is_file());
    assert_eq!(
        std::fs::read_to_string(out.join("train.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert_eq!(report["samples"]["train"], 20);
}
