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

pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Asserts `|got[i] - want[i]| <= tol[i]` everywhere, naming the first element that is not.
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
