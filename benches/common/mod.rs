//! Shared by the criterion benches: the device, named in every group.
#![allow(dead_code)]

use std::sync::Arc;

use lim::Gpu;
use lim::gpu::{GpuOptions, Tuning};

/// The adapter `LIM_ADAPTER` / `LIM_BACKEND` choose. Under `cargo bench` the autotuner
/// keeps its choices on disk as lim does; when `cargo test` runs each bench once to see that
/// it works, nothing is tuned (that would take minutes on lavapipe) or written.
pub fn gpu() -> Arc<Gpu> {
    let mut opts = GpuOptions::from_env().expect("valid LIM_ADAPTER / LIM_BACKEND / LIM_TUNING");
    if !std::env::args().any(|a| a == "--bench") {
        opts.tuning = Tuning::Off;
    }
    let gpu = Gpu::new(&opts).unwrap_or_else(|e| panic!("the benches need a wgpu adapter: {e}"));
    eprintln!("adapter: {}", gpu.describe());
    gpu
}

/// A group name that carries the adapter, so no figure stands without it.
pub fn group_name(family: &str, gpu: &Gpu) -> String {
    format!("{family} on {}", gpu.info().name)
}

pub fn pattern(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}
