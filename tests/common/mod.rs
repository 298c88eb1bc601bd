//! Shared by the integration tests: one device for all tests, random data, tolerances.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::{Arc, OnceLock};

use lim::Gpu;
use lim::gpu::{GpuOptions, Tuning};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The adapter `LIM_ADAPTER` / `LIM_BACKEND` choose (by default the best one), shared by
/// every test of a binary. Without an adapter the tests fail, never skip.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let mut opts = GpuOptions::from_env().expect("LIM_ADAPTER / LIM_BACKEND are valid");
        opts.tuning = Tuning::Memory;
        Gpu::new(&opts).unwrap_or_else(|e| panic!("the GPU tests need a wgpu adapter: {e}"))
    })
    .clone()
}

/// A device of its own that binds at most `bytes` of a buffer at once, so that small
/// tensors take the paths large ones take on a real adapter (untuned).
pub fn gpu_binding_at_most(bytes: u64) -> Arc<Gpu> {
    let mut opts = GpuOptions::from_env().expect("LIM_ADAPTER / LIM_BACKEND are valid");
    opts.tuning = Tuning::Off;
    opts.max_binding_bytes = Some(bytes);
    let gpu = Gpu::new(&opts).unwrap_or_else(|e| panic!("the GPU tests need a wgpu adapter: {e}"));
    assert_eq!(gpu.limits().max_storage_buffer_binding_size, bytes);
    gpu
}

pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Asserts `|got[i] - want[i]| <= tol[i]` everywhere, naming the first element that is not.
/// `v` widened to f64, the references' input.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol(i) || (g.is_nan() && w.is_nan()),
            "{what}: element {i} is {g}, expected {w} (error {err:e} > tolerance {:e})",
            tol(i)
        );
    }
}

/// f32's machine epsilon as f64.
pub const EPS: f64 = f32::EPSILON as f64;

/// The sample data (`make test` fetches it); without it the tests that need it fail.
pub fn samples() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/samples");
    assert!(
        dir.join(".complete").exists(),
        "the sample data is missing: run `scripts/fetch-samples.sh` (`make test` does it)"
    );
    dir
}

/// A safetensors fixture under tests/fixtures, read whole.
pub struct Golden {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl Golden {
    pub fn open(relative: &str) -> Golden {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(relative);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Golden { path, bytes }
    }

    fn st(&self) -> safetensors::SafeTensors<'_> {
        safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }

    /// Every tensor's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.st().names().into_iter().map(String::from).collect();
        names.sort();
        names
    }

    pub fn has(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    /// An f32 tensor: its shape and values.
    pub fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.st();
        let view = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", self.path.display()));
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (view.shape().to_vec(), values)
    }

    /// An f32 tensor on `gpu`.
    pub fn upload(&self, gpu: &Arc<Gpu>, name: &str) -> lim::Tensor {
        let (shape, values) = self.tensor(name);
        lim::Tensor::from_slice(gpu, &shape, &values).unwrap()
    }

    pub fn values(&self, name: &str) -> Vec<f32> {
        self.tensor(name).1
    }

    /// An int64 tensor's values.
    pub fn ints(&self, name: &str) -> Vec<i64> {
        let st = self.st();
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::I64, "{name}");
        view.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// A metadata entry parsed as a number.
    pub fn meta(&self, key: &str) -> f64 {
        let (_, meta) = safetensors::SafeTensors::read_metadata(&self.bytes).unwrap();
        let meta = meta.metadata().as_ref().expect("metadata");
        meta[key]
            .parse()
            .unwrap_or_else(|e| panic!("metadata {key}: {e}"))
    }
}

/// Asserts `|got - want| <= tol * max |want|` everywhere: an error relative to the largest
/// value, as for whole layers' outputs where single elements may be near zero.
pub fn assert_relative(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want
        .iter()
        .fold(0f64, |m, &w| m.max(w.abs() as f64))
        .max(1e-30);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs() / scale;
        assert!(
            err <= tol,
            "{what}[{i}]: lim {g}, torch {w} (error {err:e} of the largest, {scale:e})"
        );
    }
}

/// The `report.json` a `lim evaluate` or `lim experiment` wrote into `dir`.
pub fn report(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// The sample chest CTs and the DICOM series the paper-mode slices of the tests come from.
pub fn slice_sources() -> Vec<std::path::PathBuf> {
    let s = samples();
    vec![s.join("ct_volumes"), s.join("dicom/lung1_series")]
}

/// `lim preprocess --mode paper` of [`slice_sources`] into `out`: 387 slices and their
/// manifest.
pub fn paper_slices(out: &std::path::Path) -> lim::preprocess::Report {
    let opts = lim::preprocess::Options {
        mode: lim::preprocess::Mode::Paper,
        ..lim::preprocess::Options::new(out)
    };
    lim::preprocess::run(&slice_sources(), &opts, &lim::preprocess::NoProgress).unwrap()
}

/// Runs the `lim` command with `args` and waits for it.
pub fn lim<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lim"))
        .args(args)
        .output()
        .unwrap()
}

/// The JSON lines a `lim ... --json` run printed, after asserting that it succeeded.
pub fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Asserts that `module`'s named tensors and counts are exactly those of the golden file
/// `end`, its counts equal, and hands each tensor to `check(name, got, want)`.
pub fn assert_state_matches(
    module: &dyn lim::nn::Visit,
    end: &Golden,
    mut check: impl FnMut(&str, &[f32], &[f32]),
) {
    use lim::nn::Entry;
    let mut checked = Vec::new();
    module.visit("", &mut |name, entry| {
        checked.push(name.clone());
        let got = match entry {
            Entry::Param(v) => v.value().to_vec().unwrap(),
            Entry::Buffer(t) => t.to_vec().unwrap(),
            Entry::Count(n) => {
                assert_eq!(vec![n as i64], end.ints(&name), "{name}");
                return;
            }
        };
        check(&name, &got, &end.values(&name));
    });
    checked.sort();
    assert_eq!(checked, end.names());
}

/// Failures as a command wrote them, each checked to have the one form every command uses:
/// exactly `input`, `error` (which names the input) and `skipped`.
pub fn as_failures(items: impl IntoIterator<Item = serde_json::Value>) -> Vec<lim::io::Failure> {
    items
        .into_iter()
        .map(|item| {
            let keys: Vec<&str> = item
                .as_object()
                .expect("a failure is an object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["error", "input", "skipped"], "{item}");
            let failure: lim::io::Failure = serde_json::from_value(item).unwrap();
            let input = failure.input.file_name().unwrap().to_string_lossy();
            assert!(failure.error.contains(&*input), "{failure:?}");
            failure
        })
        .collect()
}

/// The failures in a `failures.jsonl`, checked as [`as_failures`] does.
pub fn failures_file(path: &std::path::Path) -> Vec<lim::io::Failure> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    as_failures(text.lines().map(|l| serde_json::from_str(l).unwrap()))
}

/// Every file under `dir` by relative path, with its bytes (but the lock of a run still
/// going): what two runs that should agree are compared by.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    lim::io::walk(&[dir.to_path_buf()])
        .unwrap()
        .files
        .into_iter()
        .filter(|p| !p.ends_with(lim::io::lock::LOCK_FILE))
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Runs lim with `args(out)` into `dir/whole` undisturbed; into `dir/killed` it starts it
/// and kills it (SIGKILL) after each of `delays_ms`, each time from the start, then lets it
/// finish. Asserts that some kill found the run going and that both folders end with the
/// same files, byte for byte.
pub fn assert_killed_runs_end_as_whole(
    dir: &std::path::Path,
    args: impl Fn(&std::path::Path) -> Vec<std::ffi::OsString>,
    delays_ms: &[u64],
) {
    let finish = |out: &std::path::Path| {
        let done = lim(&args(out));
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    };
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    finish(&whole);
    let mut interrupted = 0;
    for &delay in delays_ms {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lim"))
            .args(args(&killed))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        interrupted += child.try_wait().unwrap().is_none() as usize;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(interrupted > 0, "no kill found the run still going");
    finish(&killed);
    assert_same_files(&whole, &killed, "after the kills");
}

/// Asserts that `got` holds the same files as `want`, byte for byte (the lock aside).
pub fn assert_same_files(want: &std::path::Path, got: &std::path::Path, when: &str) {
    let (want, got) = (tree(want), tree(got));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the same files {when}"
    );
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "{name} differs {when}");
    }
}

/// A tmpfs of `size` mounted on `dir` for the test's life: a disk that fills up. Mounting
/// needs root, as CI runs.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "this test fills a tmpfs it mounts, which needs root (CI runs as root)"
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Frees space: the disk grows to `size`, its files kept.
    pub fn grow(&self, size: &str) {
        let grown = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(grown.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Asserts that a run into `out` failed on the full disk with the message that says what to
/// do, and left only whole files under their final names: no temporary, every PNG decodes
/// and every checkpoint parses.
pub fn assert_stopped_by_a_full_disk(run: &std::process::Output, out: &std::path::Path) {
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "the run should stop: {stderr}");
    assert!(
        stderr.contains("No space left on device")
            && stderr.contains("The disk is full. Free some space and run the same command again"),
        "{stderr}"
    );
    for file in lim::io::walk(&[out.to_path_buf()]).unwrap().files {
        let name = file.to_string_lossy();
        assert!(!name.contains(".lim-tmp"), "a temporary is left: {name}");
        if name.ends_with(".png") {
            image::open(&file).unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
        }
        if name.ends_with(".safetensors") {
            let bytes = std::fs::read(&file).unwrap();
            safetensors::SafeTensors::deserialize(&bytes)
                .unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
        }
    }
}

/// A new, empty folder `lim-<what>-<name>-<pid>` in the system's temporary folder.
pub fn temp_dir(what: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-{what}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The losses a `lim pretrain` run folder's `log.jsonl` holds, as written.
pub fn losses(run: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
        .collect()
}

/// Every tensor of a safetensors file by name: its shape and raw bytes (the metadata, whose
/// order varies, is left out).
pub fn tensors(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

/// `lim` arguments for a tiny pre-training run: ResNet-18 at width 1/8, 2 x 32 + 4 x 16 px
/// crops, 10 prototypes, a batch of `batch`, prototypes frozen for 2 steps, losses read every 2.
pub fn toy_pretrain(batch: &'static str) -> Vec<&'static str> {
    vec![
        "--tuning",
        "off",
        "pretrain",
        "--preset",
        "tiny",
        "--width",
        "0.125",
        "--crops",
        "2x32,4x16",
        "--batch",
        batch,
        "--prototypes",
        "10",
        "--hidden",
        "32",
        "--dim",
        "16",
        "--freeze-prototypes",
        "2",
        "--log-every",
        "2",
    ]
}

/// Waits until `path` exists, for `limit` at most, failing if `child` ends first.
pub fn wait_for(
    path: &std::path::Path,
    child: &mut std::process::Child,
    limit: std::time::Duration,
) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "no {} after {limit:?}",
            path.display()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {} was written",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
