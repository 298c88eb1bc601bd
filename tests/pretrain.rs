//! `lim pretrain` end to end at toy sizes: what a run folder holds, resumption after SIGKILL
//! ending bit for bit where an unbroken run ends, a non-finite loss stopping the run, clear
//! errors for bad inputs, and the checkpoint used by `lim embed` and `lim export`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{losses, tensors};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("pretrain", name)
}

/// 24 grey 48 x 40 slices in two "volumes" with different structure, at two depths.
fn slices(dir: &Path) -> PathBuf {
    let root = dir.join("slices");
    for i in 0..24u32 {
        let volume = i % 2;
        let image = image::GrayImage::from_fn(48, 40, |x, y| {
            let ring = ((x as i32 - 24).pow(2) + (y as i32 - 20).pow(2)) < (100 + 20 * i) as i32;
            let stripes = (x / (3 + volume * 4) + y / 5 + i) % 2 == 0;
            image::Luma([if ring {
                200
            } else if stripes {
                90
            } else {
                20
            }])
        });
        let path = root.join(format!("v{volume}/deep/{i:03}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image.save(path).unwrap();
    }
    root
}

/// A tiny run of batch 4 ([`common::toy_pretrain`]).
fn toy() -> Vec<&'static str> {
    common::toy_pretrain("4")
}

fn lim_with(args: &[&str], extra: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(extra);
    common::lim(&all)
}

/// Eight steps, a checkpoint every two.
const EIGHT_STEPS: &[&str] = &["--max-steps", "8", "--checkpoint-every", "2"];

/// The toy run for [`EIGHT_STEPS`] into `out` on the slices in `data`.
fn eight_steps(out: &Path, data: &Path) -> Output {
    let (out, data) = (out.to_str().unwrap(), data.to_str().unwrap());
    lim_with(&toy(), &[EIGHT_STEPS, &["--out", out, data]].concat())
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "lim failed: {text}");
    text
}

#[test]
fn a_run_folder_holds_config_log_curve_crops_and_checkpoints() {
    let dir = temp_dir("folder");
    let data = slices(&dir);
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let text = ok(&lim_with(
        &toy(),
        &[
            "--max-steps",
            "4",
            "--checkpoint-every",
            "2",
            "--show-crops",
            "--out",
            run_s,
            data.to_str().unwrap(),
        ],
    ));
    assert!(text.contains("found 24 slices"), "{text}");
    for file in [
        "config.json",
        "slices.txt",
        "log.jsonl",
        "loss.png",
        "crops.png",
    ] {
        assert!(run.join(file).is_file(), "{file} missing: {text}");
    }
    assert!(image::open(run.join("loss.png")).is_ok());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["step"], i + 1);
        for key in [
            "epoch",
            "loss",
            "lr",
            "images_per_s",
            "data_wait_ms",
            "entropy",
            "entropy_max",
        ] {
            assert!(line[key].is_number(), "{key} in {line}");
        }
        assert!((line["entropy_max"].as_f64().unwrap() - 10f64.ln()).abs() < 1e-9);
    }
    // Warmup from 0: the first step's learning rate is 0, as bolts' schedule gives.
    assert_eq!(lines[0]["lr"], 0.0);
    for step in ["step-0000002", "step-0000004", "last"] {
        assert!(
            run.join(format!("checkpoints/{step}.safetensors"))
                .is_file(),
            "{step}"
        );
    }
    let last = tensors(&run.join("checkpoints/last.safetensors"));
    for name in [
        "conv1.weight",
        "layer4.1.bn2.running_var",
        "layer4.1.bn2.num_batches_tracked",
        "projection_head.0.weight",
        "projection_head.1.running_mean",
        "projection_head.3.bias",
        "prototypes.weight",
        "optimizer.momentum_buffer.conv1.weight",
        "optimizer.momentum_buffer.prototypes.weight",
    ] {
        assert!(last.contains_key(name), "{name} not in the checkpoint");
    }
    assert!(!last.keys().any(|k| k.starts_with("fc.")));
    assert_eq!(last["prototypes.weight"].0, [10, 16]);
    // The run folder refuses a second run.
    let again = lim_with(
        &toy(),
        &["--max-steps", "1", "--out", run_s, data.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a run"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run killed with SIGKILL, and killed again while resuming, several times at different
/// moments, ends with the same weights, optimiser state, batch counts and losses, bit for
/// bit, as the same run never stopped (and so two runs of one seed agree); another seed does
/// not.
#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let dir = temp_dir("resume");
    let data = slices(&dir);
    let data_s = data.to_str().unwrap();
    let whole = dir.join("whole");
    ok(&eight_steps(&whole, &data));

    let broken = dir.join("broken");
    let mut args: Vec<String> = toy().iter().map(|s| s.to_string()).collect();
    args.extend(EIGHT_STEPS.iter().map(|s| s.to_string()));
    args.extend(["--out".into(), broken.display().to_string(), data_s.into()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lim"))
        .args(&args)
        .spawn()
        .unwrap();
    let second = broken.join("checkpoints/step-0000004.safetensors");
    common::wait_for(&second, &mut child, Duration::from_secs(600));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!broken.join("checkpoints/step-0000008.safetensors").exists());
    let resume = [
        "--tuning",
        "off",
        "pretrain",
        "--resume",
        broken.to_str().unwrap(),
    ];
    // Resumed runs killed again at other moments: while starting, stepping or writing.
    for delay in [250, 900, 1600] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lim"))
            .args(resume)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let text = ok(&common::lim(&resume));
    // `last.safetensors` is copied after each step's checkpoint is written, so a kill between
    // the two resumes from the checkpoint before; the first kill came after step 4's existed.
    assert!(
        ["steps 3..8", "steps 5..8", "steps 7..8", "steps 9..8"]
            .iter()
            .any(|s| text.contains(s)),
        "{text}"
    );

    let a = tensors(&whole.join("checkpoints/last.safetensors"));
    let b = tensors(&broken.join("checkpoints/last.safetensors"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, value) in &a {
        assert!(b[name] == *value, "{name} differs after resuming");
    }
    assert_eq!(losses(&whole), losses(&broken));

    let other = dir.join("other");
    let seed = ["--seed", "1", "--out", other.to_str().unwrap(), data_s];
    ok(&lim_with(&toy(), &[EIGHT_STEPS, &seed].concat()));
    let c = tensors(&other.join("checkpoints/last.safetensors"));
    assert!(
        c["conv1.weight"] != a["conv1.weight"],
        "another seed gave the same weights"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run whose disk fills up stops with the message that says what to do and leaves only
/// whole checkpoints under their names; resumed once space is freed, it ends bit for bit
/// where a run that never ran out of space ends.
#[test]
fn a_full_disk_stops_the_run_and_a_resume_ends_bit_for_bit() {
    let dir = temp_dir("full-disk");
    let data = slices(&dir);
    let whole = dir.join("whole");
    ok(&eight_steps(&whole, &data));
    let checkpoint = std::fs::metadata(whole.join("checkpoints/step-0000002.safetensors"))
        .unwrap()
        .len();

    // Room for about three checkpoints: the run stops at step 4 or 6 of 8.
    let disk = common::Tmpfs::mount(
        &dir.join("disk"),
        &format!("{}k", checkpoint * 7 / 2 / 1024),
    );
    let run = disk.0.join("run");
    let stopped = eight_steps(&run, &data);
    common::assert_stopped_by_a_full_disk(&stopped, &run);
    assert!(run.join("checkpoints/step-0000002.safetensors").exists());
    assert!(!run.join("checkpoints/step-0000008.safetensors").exists());

    disk.grow("64m");
    let resumed = ok(&common::lim(&[
        "--tuning",
        "off",
        "pretrain",
        "--resume",
        run.to_str().unwrap(),
    ]));
    assert!(
        ["steps 3..8", "steps 5..8", "steps 7..8"]
            .iter()
            .any(|s| resumed.contains(s)),
        "{resumed}"
    );
    let a = tensors(&whole.join("checkpoints/last.safetensors"));
    let b = tensors(&run.join("checkpoints/last.safetensors"));
    assert!(a == b, "the resumed run's weights differ");
    assert_eq!(losses(&whole), losses(&run));
    drop(disk);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_non_finite_loss_stops_the_run_and_names_the_last_good_checkpoint() {
    let dir = temp_dir("nan");
    let data = slices(&dir);
    let run = dir.join("run");
    let out = lim_with(
        &toy(),
        &[
            "--max-steps",
            "12",
            "--checkpoint-every",
            "1",
            "--lr",
            "1e30",
            "--out",
            run.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a run with lr 1e30 succeeded");
    assert!(
        text.contains("the loss is NaN") || text.contains("the loss is inf"),
        "{text}"
    );
    assert!(text.contains("last good checkpoint is"), "{text}");
    assert!(run.join("checkpoints/step-0000001.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = temp_dir("bad");
    let data = slices(&dir);
    let fail = |extra: &[&str]| {
        let out = lim_with(&toy(), extra);
        assert!(!out.status.success(), "{extra:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let run = dir.join("r").display().to_string();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(fail(&["--out", &run, empty.to_str().unwrap()]).contains("do not make one batch"));
    let missing = dir.join("missing").display().to_string();
    assert!(fail(&["--out", &run, &missing]).contains("missing"));
    let one = common::lim(&[
        "pretrain",
        "--batch",
        "1",
        "--out",
        &run,
        data.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&one.stderr);
    assert!(
        !one.status.success() && text.contains("BatchNorm needs 2"),
        "{text}"
    );
    assert!(fail(&["--crops", "2x32", "--out", &run, data.to_str().unwrap()]).contains("--crops"));
    assert!(fail(&["--arch", "vgg", "--out", &run, data.to_str().unwrap()]).contains("vgg"));
    // Slices whose header reads but whose pixels do not are named on stderr and in the run's
    // failures.jsonl, once each.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let whole = std::fs::read(data.join("v0/deep/000.png")).unwrap();
    for i in 0..4 {
        std::fs::write(broken.join(format!("{i}.png")), &whole[..60]).unwrap();
    }
    let broken_run = dir.join("broken-run");
    let text = fail(&[
        "--out",
        broken_run.to_str().unwrap(),
        broken.to_str().unwrap(),
    ]);
    assert!(
        text.contains("a step needs 2") && text.contains("3.png"),
        "{text}"
    );
    let failures = common::failures_file(&broken_run.join("failures.jsonl"));
    assert_eq!(failures.len(), 4, "{failures:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The checkpoint's backbone embeds images through `lim embed` (width, channels and
/// normalisation from its metadata), and exports to PyTorch's format without the optimiser.
#[test]
fn the_checkpoint_embeds_and_exports() {
    let dir = temp_dir("use");
    let data = slices(&dir);
    let run = dir.join("run");
    ok(&lim_with(
        &toy(),
        &[
            "--max-steps",
            "2",
            "--out",
            run.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
    ));
    let last = run.join("checkpoints/last.safetensors");
    let feats = dir.join("f.npy");
    let text = ok(&common::lim(&[
        "embed",
        "--weights",
        last.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
        data.to_str().unwrap(),
    ]));
    // ResNet-18 at width 1/8: 64 features.
    assert!(
        text.contains("24 images") && text.contains("[24, 64]"),
        "{text}"
    );
    let wrong = common::lim(&[
        "embed",
        "--arch",
        "resnet50",
        "--weights",
        last.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    // `lim evaluate` takes the backbone with its channels, normalisation and crop size.
    let evaluation = dir.join("evaluation");
    ok(&common::lim(&[
        "--tuning",
        "off",
        "evaluate",
        "--weights",
        last.to_str().unwrap(),
        "--limit",
        "12",
        "--epochs",
        "1",
        "--out",
        evaluation.to_str().unwrap(),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/pneumoniamnist-subset.npz"
        ),
    ]));
    let report = common::report(&evaluation);
    assert_eq!(
        report["settings"]["size"], 32,
        "the checkpoint's large crops"
    );
    assert_eq!(
        report["settings"]["mean"][0].as_f64().unwrap() as f32,
        0.1806
    );
    assert_eq!(report["arch"], "resnet18");
    let pt = dir.join("swav.pt");
    let text = ok(&common::lim(&[
        "export",
        "--format",
        "torch",
        last.to_str().unwrap(),
        pt.to_str().unwrap(),
    ]));
    let checkpoint = tensors(&last);
    let exported = checkpoint
        .keys()
        .filter(|k| !k.starts_with("optimizer."))
        .count();
    assert!(text.contains(&format!("{exported} tensors")), "{text}");
    let zip = std::fs::read(&pt).unwrap();
    assert!(zip.starts_with(b"PK"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `lim export --format torch` writes, byte for byte, the file that PyTorch loaded with
/// `weights_only=True` and found equal to its source (tests/fixtures/swav/export_check.py).
#[test]
fn the_torch_export_is_the_file_pytorch_checked() {
    let dir = temp_dir("export");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/swav");
    let out = dir.join("export.pt");
    ok(&common::lim(&[
        "export",
        "--format",
        "torch",
        fixtures.join("export_source.safetensors").to_str().unwrap(),
        out.to_str().unwrap(),
    ]));
    let checked = std::fs::read(fixtures.join("export.pt")).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == checked,
        "the export differs from export.pt"
    );
    let same = common::lim(&["export", out.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&same.stderr).contains("would overwrite"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `lim bench swav-step` names its adapter and splits a step into its phases, next to a
/// supervised step of the same backbone on the same crops.
#[test]
fn the_swav_step_bench_reports_phases_and_the_supervised_ratio() {
    for precision in ["f32", "f16"] {
        let out = common::lim(&[
            "--tuning",
            "off",
            "bench",
            "swav-step",
            "--preset",
            "tiny",
            "--batch",
            "4",
            "--steps",
            "1",
            "--precision",
            precision,
            "--json",
        ]);
        let text = ok(&out);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["what"], "swav_step");
        assert_eq!(line["precision"], precision);
        assert!(
            line["adapter"].as_str().is_some_and(|a| !a.is_empty()),
            "{line}"
        );
        let phases = &line["phases"];
        let timed = [
            (&line, "step_ms"),
            (&line, "supervised_step_ms"),
            (&line, "swav_over_supervised"),
            (&line, "images_per_s"),
            (phases, "augmentation ms"),
            (phases, "backbone forward ms"),
            (phases, "backward ms"),
            (phases, "optimiser ms"),
        ];
        for (object, key) in timed {
            assert!(
                object[key].as_f64().is_some_and(|v| v > 0.0),
                "{key} in {line}"
            );
        }
    }
}

/// Mixed precision: the run records it, logs the loss scale, keeps the scale in its
/// checkpoints, and a run resumed from one (here from step 4, as a kill after it would leave
/// the folder) ends bit for bit where the unbroken run does.
#[test]
fn a_mixed_precision_run_logs_its_loss_scale_and_resumes_bit_for_bit() {
    let dir = temp_dir("mixed");
    let data = slices(&dir);
    let run = |name: &str| -> PathBuf {
        let out = dir.join(name);
        ok(&lim_with(
            &toy(),
            &[
                "--precision",
                "f16",
                "--max-steps",
                "6",
                "--checkpoint-every",
                "2",
                "--out",
                out.to_str().unwrap(),
                data.to_str().unwrap(),
            ],
        ));
        out
    };
    let whole = run("whole");
    let config = std::fs::read_to_string(whole.join("config.json")).unwrap();
    assert!(config.contains("\"precision\": \"f16\""), "{config}");
    // The scale starts at 2^16 and halves at each skipped step (it would double after 2,000
    // finite ones).
    let log = std::fs::read_to_string(whole.join("log.jsonl")).unwrap();
    let (mut scale, mut good) = (65536.0, 0);
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let skipped = entry["skipped"].as_bool().unwrap_or(false);
        (scale, good) = match skipped {
            true => (scale / 2.0, 0),
            false => (scale, good + 1),
        };
        assert_eq!(entry["loss_scale"], scale, "{line}");
    }
    assert_eq!(log.lines().count(), 6);
    let last = whole.join("checkpoints/last.safetensors");
    let metadata = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        header.metadata().clone().unwrap()
    };
    let meta = metadata(&last);
    assert_eq!(meta["precision"], "f16");
    assert_eq!(meta["loss_scale"], scale.to_string());
    assert_eq!(meta["loss_scale_good_steps"], good.to_string());

    let broken = run("broken");
    let checkpoints = broken.join("checkpoints");
    std::fs::remove_file(checkpoints.join("step-0000006.safetensors")).unwrap();
    std::fs::copy(
        checkpoints.join("step-0000004.safetensors"),
        checkpoints.join("last.safetensors"),
    )
    .unwrap();
    let text = ok(&common::lim(&[
        "--tuning",
        "off",
        "pretrain",
        "--resume",
        broken.to_str().unwrap(),
    ]));
    assert!(text.contains("steps 5..6"), "{text}");
    // The resumed run went on with the scale it had reached, not a new one.
    let resumed = checkpoints.join("last.safetensors");
    for key in ["loss_scale", "loss_scale_good_steps"] {
        assert_eq!(metadata(&resumed)[key], meta[key], "{key}");
    }
    let a = tensors(&last);
    let b = tensors(&resumed);
    for (name, value) in &a {
        assert!(b[name] == *value, "{name} differs after resuming");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Data-parallel on two devices of one process (two replicas on the one adapter, the batch
/// split between them, FB's queue per replica): the run logs every step once, its checkpoint
/// says so, and a run killed after a checkpoint resumes on two devices bit for bit where an
/// unbroken one ends (the replicas' queues included).
#[test]
fn a_run_on_two_devices_resumes_bit_for_bit() {
    let dir = temp_dir("devices");
    let data = slices(&dir);
    let data_s = data.to_str().unwrap();
    let toy = common::toy_pretrain("8");
    let parallel = [
        "--devices",
        "0,0",
        "--queue-length",
        "8",
        "--epoch-queue-starts",
        "0",
        "--max-steps",
        "4",
        "--checkpoint-every",
        "2",
    ];
    let whole = dir.join("whole");
    let text = ok(&lim_with(
        &toy,
        &[&parallel[..], &["--out", whole.to_str().unwrap(), data_s]].concat(),
    ));
    assert!(text.contains("2 replicas (rank 0:"), "{text}");
    let logged = losses(&whole);
    assert_eq!(logged.len(), 4, "{logged:?}");
    let last = whole.join("checkpoints/last.safetensors");
    let meta = lim::nn::StateDict::load(&common::gpu(), &last)
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(meta["ranks"], "2");
    assert_eq!(tensors(&last)["queue.0"].0, [8, 16]);

    let broken = dir.join("broken");
    let mut args: Vec<&str> = toy.clone();
    args.extend(parallel);
    args.extend(["--out", broken.to_str().unwrap(), data_s]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lim"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = broken.join("checkpoints/step-0000002.safetensors");
    common::wait_for(&first, &mut child, Duration::from_secs(600));
    child.kill().unwrap();
    child.wait().unwrap();
    let resume = [
        "--tuning",
        "off",
        "pretrain",
        "--devices",
        "0,0",
        "--resume",
    ];
    ok(&lim_with(&resume, &[broken.to_str().unwrap()]));
    let a = tensors(&last);
    let b = tensors(&broken.join("checkpoints/last.safetensors"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, value) in &a {
        assert!(b[name] == *value, "{name} differs after resuming");
    }
    assert_eq!(logged, losses(&broken));

    // Devices that do not exist, and more replicas than a batch has pairs of slices.
    for (devices, error) in [
        ("0,9", "there is no device 9"),
        ("0,0,0,0,0", "fewer than 2 slices"),
    ] {
        let out = dir.join(devices.replace(',', "-"));
        let refused = lim_with(
            &toy,
            &["--devices", devices, "--out", out.to_str().unwrap(), data_s],
        );
        let text = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && text.contains(error), "{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
