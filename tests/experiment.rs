//! `lim experiment` end to end at the smallest sizes: two sample CT volumes, every default
//! reduction, one epoch of tiny SwAV each (data-parallel on two devices of one adapter), a
//! linear probe on a few PneumoniaMNIST images; then
//! a rerun that finds everything complete, and one that redoes only what was removed.

mod common;

use std::path::Path;

const PNEUMONIA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/pneumoniamnist-subset.npz"
);

#[test]
fn an_experiment_runs_resumes_and_reports() {
    let samples = common::samples();
    let exp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("experiment");
    let _ = std::fs::remove_dir_all(&exp);
    let volumes = [
        samples.join("ct_volumes/ct_example.nii.gz"),
        samples.join("ct_volumes/lung1_image.nrrd"),
    ];
    let mut args: Vec<String> = ["--tuning", "off", "experiment", "--volumes"]
        .map(String::from)
        .to_vec();
    args.extend(volumes.iter().map(|v| v.display().to_string()));
    let rest = [
        "--methods",
        "all,hash-6,every-n,random,mi",
        "--downstream",
        PNEUMONIA,
        "--epochs",
        "1",
        "--eval-limit",
        "20",
        "--eval-epochs",
        "2",
        "--repeats",
        "2",
        "--devices",
        "0,0",
        "--out",
        exp.to_str().unwrap(),
    ];
    args.extend(rest.map(String::from));
    let run = || {
        let output = common::lim(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run();
    let report = common::report(&exp);
    let rows = report["rows"].as_array().unwrap();
    let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        ["all", "hash-6", "every-n", "random", "mi", "scratch"]
    );
    // Hash-6 drops most of these slices; every-n and random keep about as many as it does.
    let slices = |i: usize| rows[i]["slices"].as_u64().unwrap();
    let hash = slices(1);
    assert!(slices(0) == 74 && hash < 50, "{rows:?}");
    // mi's threshold is bisected to the nearest count it can reach.
    assert!(
        slices(2).abs_diff(hash) <= 6
            && slices(3).abs_diff(hash) <= 2
            && slices(4).abs_diff(hash) <= 3,
        "{rows:?}"
    );
    for row in &rows[..5] {
        assert!(row["pretrain_seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            (0.0..=1.0).contains(&row["auc"][0].as_f64().unwrap()),
            "{row}"
        );
    }
    assert_eq!(rows[0]["speedup"], 1.0);
    assert!(rows[5]["pretrain_seconds"].is_null());
    let md = std::fs::read_to_string(exp.join("report.md")).unwrap();
    assert!(
        md.contains(&format!("| hash-6 | {hash} |")) && md.contains("auc_vs_time.png"),
        "{md}"
    );
    assert!(image::open(exp.join("auc_vs_time.png")).is_ok());
    let commands = std::fs::read_to_string(exp.join("commands.txt")).unwrap();
    assert_eq!(commands.lines().count(), 1 + 4 + 5 + 6, "{commands}");
    // Every pre-training ran data-parallel on two devices.
    let pretrain: Vec<&str> = commands
        .lines()
        .filter(|l| l.starts_with("lim pretrain"))
        .collect();
    assert!(
        pretrain.len() == 5 && pretrain.iter().all(|l| l.contains("--devices 0,0")),
        "{commands}"
    );

    // Everything is complete: a rerun runs nothing and reports the same.
    run();
    assert_eq!(
        std::fs::read_to_string(exp.join("commands.txt")).unwrap(),
        commands
    );
    let again = common::report(&exp);
    assert_eq!(again, report);
    // A stage that did not finish is redone, and only it.
    std::fs::remove_dir_all(exp.join("evaluate/random")).unwrap();
    run();
    let added =
        std::fs::read_to_string(exp.join("commands.txt")).unwrap()[commands.len()..].to_string();
    assert!(
        added.lines().count() == 1
            && added.contains("evaluate")
            && added.contains("pretrain/random"),
        "{added}"
    );
    // A pre-training that did not finish resumes from its checkpoint, and the report says so.
    let before = std::fs::read_to_string(exp.join("commands.txt")).unwrap();
    std::fs::remove_file(exp.join("pretrain/hash-6/stage.json")).unwrap();
    std::fs::remove_dir_all(exp.join("evaluate/hash-6")).unwrap();
    run();
    let added =
        std::fs::read_to_string(exp.join("commands.txt")).unwrap()[before.len()..].to_string();
    assert!(
        added.contains("pretrain --resume")
            && added.contains("--devices 0,0")
            && added.contains("evaluate/hash-6"),
        "{added}"
    );
    let md = std::fs::read_to_string(exp.join("report.md")).unwrap();
    assert!(
        md.lines()
            .any(|l| l.starts_with("| hash-6 |") && l.contains("(resumed)")),
        "{md}"
    );
    std::fs::remove_dir_all(&exp).unwrap();
}
