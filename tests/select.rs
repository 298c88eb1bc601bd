//! `lim reduce` against the reference (tests/fixtures/ref/hash_reduce_ref.py's kept sets for
//! the paper's rule at thresholds 6 and 12, LIDC and PET-CT names), the other strategies, and
//! reducing straight from volumes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lim::hash::{HashKind, Hasher};
use lim::preprocess::{self, Mode, NoProgress};
use lim::select::{self, Hashing, Options, Record, Scope, Strategy, VolumePattern};

fn fresh(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-reduce-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The paper-mode slices of the samples, with their manifest.
fn slices() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = fresh("slices");
        common::paper_slices(&out);
        out
    })
}

fn reference(threshold: u32) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/reduce/kept_t{threshold}.txt"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn paper(threshold: u32) -> Options {
    Options {
        strategy: Strategy::Hash {
            kind: HashKind::DHASH,
            threshold,
        },
        scope: Scope::Volume,
        pattern: VolumePattern::Auto,
        link: false,
        sheets: 0,
        shard: None,
    }
}

fn kept(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.kept)
        .map(|r| r.path.clone())
        .collect()
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".png"))
        .collect()
}

#[test]
fn the_papers_rule_keeps_what_the_reference_keeps() {
    for threshold in [6, 12] {
        for hashing in [
            Hashing::Cpu(HashKind::DHASH),
            Hashing::Gpu(Hasher::with_gpu(common::gpu(), HashKind::DHASH).unwrap()),
        ] {
            let out = fresh(&format!("t{threshold}"));
            let report =
                select::run(slices(), &out, &paper(threshold), &hashing, &NoProgress).unwrap();
            assert_eq!(report.records.len(), 387);
            assert_eq!(
                kept(&report.records),
                reference(threshold),
                "T = {threshold}"
            );
            assert_eq!(files_in(&out), reference(threshold));
            // The manifest follows the kept slices.
            let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
            assert_eq!(manifest.lines().count(), reference(threshold).len());
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

#[test]
fn every_decision_is_recorded_and_consistent() {
    let out = fresh("records");
    let report = select::run(
        slices(),
        &out,
        &paper(6),
        &Hashing::Cpu(HashKind::DHASH),
        &NoProgress,
    )
    .unwrap();
    let lines = std::fs::read_to_string(out.join("reduction.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 387);
    let by_path: std::collections::HashMap<&str, &Record> = report
        .records
        .iter()
        .map(|r| (r.path.as_str(), r))
        .collect();
    for r in &report.records {
        let hash: lim::hash::Hash = r.hash.as_ref().unwrap().parse().unwrap();
        if r.kept {
            assert!(r.exemplar.is_none() && r.distance.is_none());
            // Farther than 6 bits from every slice kept before it in its volume.
            for other in report
                .records
                .iter()
                .filter(|o| o.kept && o.volume == r.volume && o.path.as_bytes() < r.path.as_bytes())
            {
                assert!(hash.hamming(&other.hash.as_ref().unwrap().parse().unwrap()) > 6);
            }
        } else {
            let exemplar = by_path[r.exemplar.as_deref().unwrap()];
            assert!(exemplar.kept && exemplar.volume == r.volume);
            assert!(
                exemplar.path.as_bytes() < r.path.as_bytes(),
                "the exemplar comes first in path order"
            );
            let d = hash.hamming(&exemplar.hash.as_ref().unwrap().parse().unwrap());
            assert_eq!(Some(d), r.distance);
            assert!(d <= 6);
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn file_name_patterns_group_like_the_paper() {
    // Without a manifest, the names decide: LIDC names by patient, PET-CT names by study.
    let plain = fresh("names");
    std::fs::create_dir_all(&plain).unwrap();
    for name in files_in(slices()) {
        std::fs::copy(slices().join(&name), plain.join(&name)).unwrap();
    }
    // One slice that cannot be read is a failure, and the rest are reduced as before.
    std::fs::write(plain.join("broken_0.png"), b"\x89PNG\r\n\x1a\nrubbish").unwrap();
    let cpu = Hashing::Cpu(HashKind::DHASH);
    let out = fresh("names-out");
    let report = select::run(&plain, &out, &paper(6), &cpu, &NoProgress).unwrap();
    assert_eq!(kept(&report.records), reference(6));
    let failures = common::failures_file(&out.join("failures.jsonl"));
    assert_eq!(failures, report.failures);
    assert_eq!(failures.len(), 1);
    assert!(failures[0].input.ends_with("broken_0.png"));
    let volumes: BTreeSet<&str> = report.records.iter().map(|r| r.volume.as_str()).collect();
    assert!(
        volumes.contains("PYRADIOMICS-LUNG1") && volumes.contains("ct_head_2"),
        "{volumes:?}"
    );

    for (pattern, prefix) in [("lidc", "PYRADIOMICS"), ("petct", "ct_head")] {
        let subset = fresh(&format!("names-{pattern}"));
        std::fs::create_dir_all(&subset).unwrap();
        for name in files_in(&plain)
            .into_iter()
            .filter(|n| n.starts_with(prefix))
        {
            std::fs::copy(plain.join(&name), subset.join(&name)).unwrap();
        }
        let opts = Options {
            pattern: pattern.parse().unwrap(),
            ..paper(6)
        };
        let sub_out = fresh(&format!("names-{pattern}-out"));
        let report = select::run(&subset, &sub_out, &opts, &cpu, &NoProgress).unwrap();
        let want: BTreeSet<String> = reference(6)
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        assert_eq!(kept(&report.records), want, "{pattern}");
        assert_eq!(report.summary().len(), 1, "{pattern}: one volume");
        for d in [&subset, &sub_out] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    for d in [&plain, &out] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn reducing_from_volumes_equals_preprocessing_then_reducing() {
    for mode in [Mode::Paper, Mode::Default] {
        let on_disk = fresh("two-step");
        let opts = preprocess::Options {
            mode,
            ..preprocess::Options::new(on_disk.join("slices"))
        };
        preprocess::run(&common::slice_sources(), &opts, &NoProgress).unwrap();
        let cpu = Hashing::Cpu(HashKind::DHASH);
        let reduced = on_disk.join("reduced");
        select::run(
            &on_disk.join("slices"),
            &reduced,
            &paper(6),
            &cpu,
            &NoProgress,
        )
        .unwrap();

        let direct = fresh("one-step");
        let strategy = Strategy::Hash {
            kind: HashKind::DHASH,
            threshold: 6,
        };
        let opts = preprocess::Options {
            mode,
            ..preprocess::Options::new(&direct)
        };
        select::run_from_volumes(
            &common::slice_sources(),
            &opts,
            &strategy,
            &cpu,
            &NoProgress,
        )
        .unwrap();

        let walk = |d: &Path| -> Vec<PathBuf> {
            lim::io::walk(&[d.to_path_buf()])
                .unwrap()
                .files
                .into_iter()
                .map(|p| p.strip_prefix(d).unwrap().to_path_buf())
                .collect()
        };
        assert_eq!(walk(&reduced), walk(&direct), "{mode:?}: the same files");
        for rel in walk(&direct) {
            assert!(
                std::fs::read(reduced.join(&rel)).unwrap()
                    == std::fs::read(direct.join(&rel)).unwrap(),
                "{mode:?}: {}",
                rel.display()
            );
        }
        std::fs::remove_dir_all(&on_disk).unwrap();
        std::fs::remove_dir_all(&direct).unwrap();
    }
}

#[test]
fn other_strategies_and_options() {
    let cpu = Hashing::Cpu(HashKind::DHASH);
    let run = |strategy: Strategy, scope: Scope| {
        let out = fresh("strategy");
        let opts = Options {
            strategy,
            scope,
            ..paper(6)
        };
        let report = select::run(slices(), &out, &opts, &cpu, &NoProgress).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        report
    };
    let every3 = run(Strategy::EveryN(3), Scope::Volume);
    for (volume, total, kept) in every3.summary() {
        assert_eq!(kept, total.div_ceil(3), "{volume}");
    }
    let a = run(
        Strategy::Random {
            fraction: 0.25,
            seed: 7,
        },
        Scope::Volume,
    );
    let b = run(
        Strategy::Random {
            fraction: 0.25,
            seed: 7,
        },
        Scope::Volume,
    );
    let c = run(
        Strategy::Random {
            fraction: 0.25,
            seed: 8,
        },
        Scope::Volume,
    );
    assert_eq!(kept(&a.records), kept(&b.records));
    assert_ne!(kept(&a.records), kept(&c.records));
    for (_, total, kept) in a.summary() {
        assert_eq!(kept, (total as f64 * 0.25).round() as usize);
    }
    // Nothing is that similar: everything stays; everything is: one slice per volume stays.
    for strategy in [
        Strategy::Ssim { threshold: 1.01 },
        Strategy::Mi { threshold: 1.01 },
    ] {
        assert_eq!(kept(&run(strategy, Scope::Volume).records).len(), 387);
    }
    for strategy in [
        Strategy::Ssim { threshold: -1.0 },
        Strategy::Mi { threshold: -1.0 },
    ] {
        assert_eq!(kept(&run(strategy, Scope::Volume).records).len(), 7);
    }
    let ssim = run(Strategy::Ssim { threshold: 0.9 }, Scope::Volume);
    assert!(
        ssim.records
            .iter()
            .all(|r| r.kept || r.similarity.unwrap() >= 0.9)
    );
    // Global scope compares across volumes: no more kept than per volume.
    let global = run(
        Strategy::Hash {
            kind: HashKind::DHASH,
            threshold: 6,
        },
        Scope::Global,
    );
    assert_eq!(global.summary().len(), 1);
    assert!(kept(&global.records).len() <= reference(6).len());
}

#[test]
fn hard_links_contact_sheets_and_untouched_inputs() {
    let out = fresh("links");
    // Every input file with its size and modification time.
    let listing = || -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        lim::io::walk(&[slices().to_path_buf()])
            .unwrap()
            .files
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).unwrap();
                (p, meta.len(), meta.modified().unwrap())
            })
            .collect()
    };
    let before = listing();
    let opts = Options {
        link: true,
        sheets: 2,
        shard: None,
        ..paper(6)
    };
    select::run(
        slices(),
        &out,
        &opts,
        &Hashing::Cpu(HashKind::DHASH),
        &NoProgress,
    )
    .unwrap();
    use std::os::unix::fs::MetadataExt;
    for name in files_in(&out) {
        assert_eq!(
            std::fs::metadata(out.join(&name)).unwrap().ino(),
            std::fs::metadata(slices().join(&name)).unwrap().ino(),
            "{name}"
        );
    }
    let sheets: Vec<_> = std::fs::read_dir(out.join("sheets")).unwrap().collect();
    assert_eq!(sheets.len(), 2);
    assert_eq!(before, listing());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn volume_patterns() {
    let auto = VolumePattern::Auto;
    assert_eq!(auto.volume_of("LIDC-IDRI-0001_17.png"), "LIDC-IDRI-0001");
    assert_eq!(
        auto.volume_of("PETCT_20a607649d_111_0.png"),
        "PETCT_20a607649d_111"
    );
    assert_eq!(auto.volume_of("case7/0003.png"), "case7");
    assert_eq!(auto.volume_of("scan-slice12.png"), "scan");
    let lidc: VolumePattern = "lidc".parse().unwrap();
    assert_eq!(lidc.volume_of("LIDC-IDRI-0001_17.png"), "LIDC-IDRI-0001");
    let petct: VolumePattern = "petct".parse().unwrap();
    assert_eq!(
        petct.volume_of("PETCT_20a607649d_111_0.png"),
        "PETCT_20a607649d_111"
    );
    let dir: VolumePattern = "dir".parse().unwrap();
    assert_eq!(dir.volume_of("a/b/0001.png"), "a/b");
    let re: VolumePattern = r"regex:^(\w+?)-\d+$".parse().unwrap();
    assert_eq!(re.volume_of("sub/knee-004.png"), "sub/knee");
    assert!("regex:(".parse::<VolumePattern>().is_err());
    assert!(
        "lidcx"
            .parse::<VolumePattern>()
            .unwrap_err()
            .contains("auto, lidc")
    );
}

#[test]
fn the_reduce_command_summarises_and_refuses_to_write_into_its_input() {
    let out = fresh("cli");
    let run = |args: &[&str]| common::lim(&[&["reduce"], args].concat());
    let input = slices().to_str().unwrap();
    let done = run(&[input, out.to_str().unwrap(), "--cpu"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stdout = String::from_utf8_lossy(&done.stdout);
    let all = stdout.lines().find(|l| l.starts_with("all ")).unwrap();
    let columns: Vec<&str> = all.split_whitespace().collect();
    assert_eq!(
        columns[1..3],
        ["387", &reference(6).len().to_string()],
        "{stdout}"
    );
    assert_eq!(files_in(&out), reference(6));

    for inside in [slices().to_path_buf(), slices().join("new/reduced")] {
        let refused = run(&[input, inside.to_str().unwrap(), "--cpu"]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("the output lies in the input folder"),
            "{stderr}"
        );
        assert!(!slices().join("new").exists());
    }
    assert_eq!(files_in(slices()).len(), 387);
    std::fs::remove_dir_all(&out).unwrap();
}

/// The paper's "DeepNet" strategy: the exemplar rule on the cosine similarity of a ResNet's
/// pooled features, each dropped slice at least `threshold` alike its kept exemplar.
#[test]
fn the_embedding_strategy_keeps_by_feature_similarity() {
    use std::sync::Arc;

    use lim::eval::encoder::{Encoder, EncoderOptions, SliceEmbedder};
    use lim::select::{Embedder, SharedEmbedder};
    let gpu = common::gpu();
    let options = EncoderOptions {
        arch: Some("resnet18".into()),
        width: Some(0.0625),
        ..Default::default()
    };
    let embedder = Arc::new(SliceEmbedder {
        gpu: gpu.clone(),
        encoder: Encoder::load(&gpu, &options).unwrap(),
        size: 32,
        batch: 64,
    });
    let cpu = Hashing::Cpu(HashKind::DHASH);
    let run = |threshold: f64| {
        let out = fresh("embedding");
        let strategy = Strategy::Embedding {
            threshold,
            embedder: SharedEmbedder(embedder.clone()),
        };
        let report = select::run(
            slices(),
            &out,
            &Options {
                strategy,
                ..paper(6)
            },
            &cpu,
            &NoProgress,
        )
        .unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        report
    };
    assert_eq!(kept(&run(1.01).records).len(), 387, "nothing is that alike");
    assert_eq!(
        kept(&run(-1.01).records).len(),
        7,
        "everything is: one slice per volume"
    );
    let report = run(0.999);
    let kept_slices = kept(&report.records);
    assert!(
        kept_slices.len() > 7 && kept_slices.len() < 387,
        "{}",
        kept_slices.len()
    );
    let dropped: Vec<&Record> = report.records.iter().filter(|r| !r.kept).collect();
    for r in &dropped {
        assert!(
            r.similarity.unwrap() >= 0.999 && kept_slices.contains(r.exemplar.as_ref().unwrap()),
            "{r:?}"
        );
    }
    // The recorded similarity is the features' cosine, as the embedder computes them.
    let r = dropped[dropped.len() / 2];
    let open = |rel: &str| lim::hash::open_luma(&slices().join(rel)).unwrap();
    let (a, b) = (open(r.exemplar.as_ref().unwrap()), open(&r.path));
    let f = embedder.embed(&[&a, &b]).unwrap();
    let dot: f64 = f[0]
        .iter()
        .zip(&f[1])
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let cosine = dot / (norm(&f[0]) * norm(&f[1]));
    assert!(
        (cosine - r.similarity.unwrap()).abs() < 1e-5,
        "{cosine} vs {r:?}"
    );
}

/// An error that no slice caused (the device's; here an embedder's) stops the run and is
/// returned, on a folder and on volumes in memory: it is never written down as the failure
/// of a slice or of a volume.
#[test]
fn a_device_error_stops_the_run_and_blames_no_input() {
    use std::sync::Arc;

    use lim::hash::Luma8;
    use lim::select::{Embedder, SharedEmbedder};
    struct DeviceLost;
    impl Embedder for DeviceLost {
        fn embed(&self, _: &[&Luma8]) -> lim::Result<Vec<Vec<f32>>> {
            Err(lim::Error::InvalidArgument {
                op: "embed",
                why: "the device was lost".into(),
            })
        }
    }
    let strategy = Strategy::Embedding {
        threshold: 0.9,
        embedder: SharedEmbedder(Arc::new(DeviceLost)),
    };
    let cpu = Hashing::Cpu(HashKind::DHASH);
    let lost = |e: &lim::Error| e.to_string().contains("the device was lost");

    let out = fresh("device-lost");
    let options = Options {
        strategy: strategy.clone(),
        ..paper(6)
    };
    let err = select::run(slices(), &out, &options, &cpu, &NoProgress).unwrap_err();
    assert!(lost(&err), "{err}");
    assert!(!out.join("failures.jsonl").exists());

    let direct = fresh("device-lost-volumes");
    let opts = preprocess::Options::new(&direct);
    let err = select::run_from_volumes(
        &common::slice_sources(),
        &opts,
        &strategy,
        &cpu,
        &NoProgress,
    )
    .unwrap_err();
    assert!(lost(&err), "{err}");
    assert!(!direct.join("failures.jsonl").exists());
    for dir in [out, direct] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `lim reduce` killed with SIGKILL at several moments, then rerun, ends with the same files,
/// byte for byte, as a run never stopped (kept slices, decisions, manifest, contact sheets).
#[test]
fn a_killed_reduce_reruns_to_the_same_outputs() {
    let dir = fresh("killed");
    let run = |out: &Path| {
        ["reduce", "--sheets", "2"]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain([slices().as_os_str().to_owned(), out.as_os_str().to_owned()])
            .collect::<Vec<_>>()
    };
    common::assert_killed_runs_end_as_whole(&dir, run, &[150, 300, 500, 800]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An archive reduced in three parts (`--shard i/3`) and merged gives what one run gives,
/// file for file, per volume and with `--scope global`; each volume is in exactly one part;
/// a merge refuses parts that are missing, unfinished or cut differently.
#[test]
fn parts_merged_equal_one_run_per_volume_and_globally() {
    let run = |args: &[&str]| {
        let out = common::lim(&[&["reduce", "--cpu"], args].concat());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let dir = fresh("shards");
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
    // The sample slices and their manifest, and one slice that cannot be read.
    let copy = dir.join("slices");
    std::fs::create_dir_all(&copy).unwrap();
    for name in files_in(slices()) {
        std::fs::copy(slices().join(&name), copy.join(&name)).unwrap();
    }
    let mut manifest = std::fs::read_to_string(slices().join("manifest.jsonl")).unwrap();
    manifest.push_str("{\"path\": \"broken_0.png\", \"volume\": \"broken\"}\n");
    std::fs::write(copy.join("manifest.jsonl"), manifest).unwrap();
    std::fs::write(copy.join("broken_0.png"), b"\x89PNG\r\n\x1a\nrubbish").unwrap();
    let input = copy.to_str().unwrap();
    run(&[input, &at("one")]);
    run(&[input, &at("one-global"), "--scope", "global"]);
    let parts: Vec<String> = (0..3).map(|i| at(&format!("part{i}"))).collect();
    for (i, part) in parts.iter().enumerate() {
        run(&[input, part, "--shard", &format!("{i}/3")]);
        assert!(Path::new(part).join("shard.json").is_file());
    }
    let volumes_of = |dir: &str| -> BTreeSet<String> {
        let text = std::fs::read_to_string(Path::new(dir).join("reduction.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["volume"].to_string())
            .collect()
    };
    let mut seen = BTreeSet::new();
    for part in &parts {
        for volume in volumes_of(part) {
            assert!(seen.insert(volume.clone()), "{volume} in two parts");
        }
    }
    assert_eq!(seen, volumes_of(&at("one")));
    let failures = common::failures_file(&dir.join("one/failures.jsonl"));
    assert!(
        failures.len() == 1 && failures[0].input.ends_with("broken_0.png"),
        "{failures:?}"
    );
    assert!(
        seen.len() >= 3,
        "the samples have volumes enough for three parts: {seen:?}"
    );

    let merge = |scope: &str, out: &str| {
        let args: Vec<&str> = ["--merge", "--scope", scope]
            .into_iter()
            .chain(parts.iter().rev().map(String::as_str))
            .chain([out])
            .collect();
        run(&args);
    };
    merge("volume", &at("merged"));
    common::assert_same_files(&dir.join("one"), &dir.join("merged"), "merged per volume");
    merge("global", &at("merged-global"));
    common::assert_same_files(
        &dir.join("one-global"),
        &dir.join("merged-global"),
        "merged globally",
    );

    let refused = |args: &[&str], why: &str| {
        let out = common::lim(&[&["reduce"], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    };
    refused(
        &["--merge", &parts[0], &parts[2], &at("m1")],
        "parts 1/3 are missing",
    );
    refused(
        &["--merge", &parts[0], &parts[0], &parts[1], &at("m2")],
        "given twice",
    );
    refused(
        &["--merge", &parts[0], &parts[1], &at("one"), &at("m3")],
        "not a finished part",
    );
    run(&[input, &at("half0"), "--shard", "0/2"]);
    refused(
        &["--merge", &parts[0], &parts[1], &at("half0"), &at("m4")],
        "a part of 2 (not 3)",
    );
    let inside = copy.join("merged");
    let inside = inside.to_str().unwrap();
    refused(
        &["--merge", &parts[0], &parts[1], &parts[2], inside],
        "lies in the input folder",
    );
    assert!(!copy.join("merged").exists());
    refused(&[input, &at("bad"), "--shard", "3/3"], "is not a shard");
    refused(
        &[input, &at("bad"), "--shard", "0/3", "--scope", "global"],
        "volume by volume",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
