//! A small autotuner: the first time an op meets a shape class on an adapter, it times each
//! kernel variant that can run it and keeps the fastest. Choices persist in the user's cache
//! directory, in one file per adapter, driver, lim version and set of kernel sources.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Gpu, GpuError};

/// Where tuning choices live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    /// Time the variants on first use; keep the choices in `$LIM_CACHE_DIR` or the user's
    /// cache directory (`~/.cache/lim` on Linux).
    #[default]
    Disk,
    /// Like `Disk`, in this directory.
    Dir(PathBuf),
    /// Time the variants on first use; keep the choices for this process only.
    Memory,
    /// Never time: every op uses its default variant.
    Off,
}

impl std::str::FromStr for Tuning {
    type Err = GpuError;

    /// `disk`, `memory` or `off` (`LIM_TUNING`, `--tuning`).
    fn from_str(s: &str) -> Result<Tuning, GpuError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disk" => Ok(Tuning::Disk),
            "memory" => Ok(Tuning::Memory),
            "off" => Ok(Tuning::Off),
            _ => Err(GpuError::UnknownTuning(s.to_string())),
        }
    }
}

/// What the tuner decided for one key, with the time of each variant it measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TuneRecord {
    pub choice: String,
    /// Best time per variant, in microseconds; variants cut short are timed once.
    pub micros: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    lim_version: String,
    adapter: String,
    backend: String,
    driver: String,
    driver_info: String,
    entries: BTreeMap<String, TuneRecord>,
}

pub(crate) struct Autotuner {
    tuning: Tuning,
    path: Option<PathBuf>,
    info: wgpu::AdapterInfo,
    /// Loaded from disk on first use.
    entries: Mutex<Option<BTreeMap<String, TuneRecord>>>,
    /// One tuning at a time, so variants are not timed against each other's load.
    timing: Mutex<()>,
}

/// Timed runs per variant.
const RUNS: usize = 3;

/// The folder `Tuning::Disk` keeps its files in: `$LIM_CACHE_DIR`, else the user's cache
/// directory's `lim`.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("LIM_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|d| d.join("lim")),
    }
}

fn cache_file_name(info: &wgpu::AdapterInfo) -> String {
    let slug: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    // The kernels' sources too: a choice made for other kernels is no choice for these.
    let sources: String = super::shader::ALL.iter().map(|s| s.source).collect();
    let key = format!(
        "{}|{:?}|{}|{}|{}|{}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        env!("CARGO_PKG_VERSION"),
        sources
    );
    format!(
        "autotune-{slug}-{:016x}.json",
        crate::io::names::fnv1a(key.as_bytes())
    )
}

impl Autotuner {
    pub(crate) fn new(tuning: Tuning, info: &wgpu::AdapterInfo) -> Self {
        let dir = match &tuning {
            Tuning::Disk => cache_dir(),
            Tuning::Dir(dir) => Some(dir.clone()),
            Tuning::Memory | Tuning::Off => None,
        };
        let path = dir.map(|d| d.join(cache_file_name(info)));
        Self {
            tuning,
            path,
            info: info.clone(),
            entries: Mutex::new(None),
            timing: Mutex::new(()),
        }
    }

    fn with_entries<R>(&self, f: impl FnOnce(&mut BTreeMap<String, TuneRecord>) -> R) -> R {
        let mut guard = self.entries.lock().unwrap();
        let entries = guard.get_or_insert_with(|| {
            self.path
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
                .map(|file| file.entries)
                .unwrap_or_default()
        });
        f(entries)
    }

    /// Writes the choices next to the file and renames it into place; a cache that cannot be
    /// written only means tuning again next time.
    fn save(&self, entries: &BTreeMap<String, TuneRecord>) {
        let Some(path) = &self.path else { return };
        let file = CacheFile {
            lim_version: env!("CARGO_PKG_VERSION").into(),
            adapter: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend),
            driver: self.info.driver.clone(),
            driver_info: self.info.driver_info.clone(),
            entries: entries.clone(),
        };
        let Ok(json) = serde_json::to_vec_pretty(&file) else {
            return;
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::io::write_atomic(path, &json);
    }
}

thread_local! {
    /// Whether this thread is timing candidates already.
    static TIMING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as timing until dropped.
struct Inside(bool);

impl Inside {
    fn enter() -> Inside {
        Inside(TIMING_HERE.replace(true))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        TIMING_HERE.set(self.0);
    }
}

impl Gpu {
    /// The variant to use for `key`, one of `candidates` (the first is the default): one
    /// enum per op, each variant a kernel some adapter wants, known to the cache by `name`.
    /// On the first call for a key, each candidate is run through `run` (which records the op
    /// with that variant) once to warm up and then timed; the fastest is remembered.
    pub fn autotune<V: Copy, N: Into<String>, E: From<GpuError>>(
        &self,
        key: &str,
        candidates: &[V],
        name: impl Fn(V) -> N,
        mut run: impl FnMut(V) -> Result<(), E>,
    ) -> Result<V, E> {
        let Some(&default) = candidates.first() else {
            return Err(GpuError::Validation(format!("{key}: no kernel variant to run")).into());
        };
        if self.tuner.tuning == Tuning::Off || candidates.len() == 1 {
            return Ok(default);
        }
        let names: Vec<String> = candidates.iter().map(|&v| name(v).into()).collect();
        let known = |tuner: &super::Autotuner| {
            tuner.with_entries(|e| {
                e.get(key)
                    .and_then(|r| names.iter().position(|n| *n == r.choice))
                    .map(|i| candidates[i])
            })
        };
        if let Some(choice) = known(&self.tuner) {
            return Ok(choice);
        }
        // One tuning at a time, so timings do not disturb each other; an op tuned while
        // another is being timed (a convolution's matmul) is tuned on the same thread, inside.
        let _one_at_a_time = match TIMING_HERE.get() {
            true => None,
            false => Some(self.tuner.timing.lock().unwrap()),
        };
        let _inside = Inside::enter();
        if let Some(choice) = known(&self.tuner) {
            return Ok(choice);
        }
        let mut micros = BTreeMap::new();
        let mut best: Option<(Duration, usize)> = None;
        let mut first_error = None;
        for (i, &candidate) in candidates.iter().enumerate() {
            match self.time_variant(|| run(candidate), best.map(|b| b.0)) {
                Ok(t) => {
                    micros.insert(names[i].clone(), t.as_secs_f64() * 1e6);
                    if best.is_none_or(|(b, _)| t < b) {
                        best = Some((t, i));
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let Some((_, choice)) = best else {
            return Err(first_error.expect("a candidate that did not run left its error"));
        };
        let record = TuneRecord {
            choice: names[choice].clone(),
            micros,
        };
        self.tuner.with_entries(|entries| {
            entries.insert(key.to_string(), record);
            self.tuner.save(entries);
        });
        Ok(candidates[choice])
    }

    /// Best of a few runs; a variant far behind the best so far is timed only once.
    fn time_variant<E: From<GpuError>>(
        &self,
        mut run: impl FnMut() -> Result<(), E>,
        best_so_far: Option<Duration>,
    ) -> Result<Duration, E> {
        self.time(&mut run)?;
        let mut fastest = Duration::MAX;
        for _ in 0..RUNS {
            let ((), timing) = self.time(&mut run)?;
            fastest = fastest.min(timing.best());
            if best_so_far.is_some_and(|b| fastest > b * 2) {
                break;
            }
        }
        Ok(fastest)
    }

    /// What the tuner has recorded for `key`, if anything.
    pub fn tuned(&self, key: &str) -> Option<TuneRecord> {
        self.tuner.with_entries(|e| e.get(key).cloned())
    }

    /// The file tuning choices persist in, when they persist.
    pub fn tune_cache_path(&self) -> Option<&Path> {
        self.tuner.path.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_file_depends_on_adapter_driver_and_version() {
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan);
        info.name = "llvmpipe (LLVM 15.0.6, 256 bits)".into();
        info.driver_info = "Mesa 22.3.6".into();
        let a = cache_file_name(&info);
        assert!(
            a.starts_with("autotune-llvmpipe--llvm-15-0-6--256-bits--"),
            "{a}"
        );
        assert!(a.ends_with(".json"));
        info.driver_info = "Mesa 25.0.7".into();
        assert_ne!(a, cache_file_name(&info));
    }
}
