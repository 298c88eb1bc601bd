//! Scaling out: the sharded reduction run as Ray tasks by scripts/ray-reduce.py on a local
//! Ray head, against one run of `lim reduce`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn fresh(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-scale-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Python with Ray: `LIM_RAY_PYTHON`, else the environment `make ray` (and `make test`)
/// makes in the lim folder.
fn ray_python() -> PathBuf {
    if let Some(python) = std::env::var_os("LIM_RAY_PYTHON") {
        return python.into();
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ray/bin/python");
    assert!(
        python.exists(),
        "this test runs Ray: `make ray` (which `make test` runs) installs it, or set LIM_RAY_PYTHON"
    );
    python
}

/// A Ray head started for the test, stopped when dropped. Loopback only: without Ray's token
/// authentication (which a token left in ~/.ray would otherwise turn on for the head alone).
struct RayHead {
    python: PathBuf,
    address: String,
}

impl RayHead {
    fn start(python: &Path) -> RayHead {
        // A free port: taken from the system, then handed to Ray.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Command::new(python)
            .args([
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--num-cpus=2",
            ])
            .args(["--include-dashboard=false", "--disable-usage-stats"])
            .arg(format!("--port={port}"))
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "ray start: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        RayHead {
            python: python.to_path_buf(),
            address: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for RayHead {
    fn drop(&mut self) {
        let _ = Command::new(&self.python)
            .env("RAY_AUTH_MODE", "disabled")
            .args(["-m", "ray.scripts.scripts", "stop", "--force"])
            .output();
    }
}

/// Three parts on a local Ray head of two CPUs, one failing on its first attempt (a `lim`
/// that exits 3 once for part 1/3): Ray retries it, and the merge equals one run, file for
/// file.
#[test]
fn a_sharded_reduction_on_ray_retries_a_failed_part_and_equals_one_run() {
    let python = ray_python();
    let dir = fresh("ray");
    let slices = dir.join("slices");
    common::paper_slices(&slices);
    let one = dir.join("one");
    let run = common::lim(&[
        "reduce",
        "--cpu",
        slices.to_str().unwrap(),
        one.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let failed_once = dir.join("failed-once");
    let flaky = dir.join("flaky-lim");
    std::fs::write(
        &flaky,
        format!(
            "#!/bin/sh\ncase \"$*\" in *'--shard 1/3'*) [ -e '{0}' ] || {{ touch '{0}'; exit 3; }};; esac\nexec '{1}' \"$@\"\n",
            failed_once.display(),
            env!("CARGO_BIN_EXE_lim")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&flaky, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let head = RayHead::start(&python);
    let merged = dir.join("merged");
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ray-reduce.py");
    let done = Command::new(&python)
        .env("RAY_AUTH_MODE", "disabled")
        .arg(driver)
        .args([&slices, &merged])
        .args(["--parts", "3", "--address", &head.address, "--lim"])
        .arg(&flaky)
        .args(["--", "--cpu"])
        .output()
        .unwrap();
    drop(head);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        failed_once.exists(),
        "part 1/3 failed once, and was retried"
    );
    // Ray prints its own lines too: the driver's is the last.
    let stdout = String::from_utf8_lossy(&done.stdout);
    let line: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["parts"], 3);
    common::assert_same_files(&one, &merged, "merged from Ray's parts");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `lim bench scale` reduces its synthetic archive in one run and in parts, checks that each
/// merge equals the one run (it fails otherwise), and reports every part count.
#[test]
fn the_scale_bench_reports_one_run_and_every_part_count() {
    let out = common::lim(&[
        "bench",
        "scale",
        "--slices",
        "600",
        "--per-volume",
        "100",
        "--parts",
        "1,3",
        "--json",
    ]);
    let lines = common::json_lines(&out);
    let one = lines.iter().find(|l| l["what"] == "one run").unwrap();
    assert_eq!(one["slices"], 600);
    assert_eq!(one["volumes"], 6);
    let kept = one["kept"].as_u64().unwrap();
    assert!(
        kept > 6 && kept < 600,
        "near-duplicates dropped, some kept: {kept}"
    );
    assert!(!one["cpu"].as_str().unwrap().is_empty());
    let parts: Vec<u64> = lines
        .iter()
        .filter(|l| l["what"] == "parts")
        .map(|l| l["parts"].as_u64().unwrap())
        .collect();
    assert_eq!(parts, [1, 3]);
    for line in lines.iter().filter(|l| l["what"] == "parts") {
        for key in [
            "parts_seconds",
            "slowest_part_seconds",
            "merge_seconds",
            "merge_global_seconds",
        ] {
            assert!(line[key].as_f64().unwrap() > 0.0, "{key}: {line}");
        }
    }
}
