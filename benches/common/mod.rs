//! Shared by the criterion benches: the device, named in every group; the workloads
//! themselves are `lim::bench`'s, which `lim bench` runs too.
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

/// The inputs `lim bench` uses too.
#[allow(unused_imports)] // each bench uses its own subset
pub use lim::bench::pattern;
