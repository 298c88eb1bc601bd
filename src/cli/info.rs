//! `lim info`: the adapters wgpu sees, the one lim chooses, its limits and features.

use lim::Gpu;
use lim::gpu::{AdapterReport, OPTIONAL_FEATURES, describe, survey};
use serde_json::json;

use super::{CliResult, GpuArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// The limits that decide what lim's kernels can do, by wgpu's names.
fn key_limits(l: &wgpu::Limits) -> Vec<(&'static str, u64)> {
    vec![
        ("max_buffer_size", l.max_buffer_size),
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
        ),
        (
            "max_uniform_buffer_binding_size",
            l.max_uniform_buffer_binding_size,
        ),
        (
            "min_storage_buffer_offset_alignment",
            l.min_storage_buffer_offset_alignment as u64,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size as u64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x as u64,
        ),
        (
            "max_compute_workgroup_size_y",
            l.max_compute_workgroup_size_y as u64,
        ),
        (
            "max_compute_workgroup_size_z",
            l.max_compute_workgroup_size_z as u64,
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension as u64,
        ),
        ("max_bind_groups", l.max_bind_groups as u64),
    ]
}

/// The optional features lim uses, and whether the adapter has each.
fn lim_features(f: wgpu::Features) -> Vec<(String, bool)> {
    OPTIONAL_FEATURES
        .iter()
        .map(|(flag, name)| (name.to_string(), f.contains(*flag)))
        .collect()
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn adapter_json(a: &AdapterReport, chosen: bool) -> serde_json::Value {
    json!({
        "name": a.info.name,
        "backend": format!("{:?}", a.info.backend),
        "device_type": format!("{:?}", a.info.device_type),
        "driver": a.info.driver,
        "driver_info": a.info.driver_info,
        "chosen": chosen,
    })
}

pub fn run(gpu_args: &GpuArgs, args: &Args) -> CliResult {
    let opts = gpu_args.options()?;
    let survey = survey(&opts);
    let Some(chosen) = survey.chosen.map(|i| &survey.adapters[i]) else {
        // The same error Gpu::new gives, listing what there is.
        return Err(Gpu::new(&opts).expect_err("no adapter was chosen").into());
    };
    let gpu = Gpu::new(&opts)?;
    let limits = key_limits(&chosen.limits);
    let features = lim_features(chosen.features);
    let cache = gpu.tune_cache_path().map(|p| p.display().to_string());

    if args.json {
        let report = json!({
            "lim_version": env!("CARGO_PKG_VERSION"),
            "adapters": survey.adapters.iter().enumerate()
                .map(|(i, a)| adapter_json(a, Some(i) == survey.chosen)).collect::<Vec<_>>(),
            "chosen": adapter_json(chosen, true),
            "limits": limits.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "features": features.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "subgroup_size": [chosen.info.subgroup_min_size, chosen.info.subgroup_max_size],
            "autotune_cache": cache,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    println!("lim {}", env!("CARGO_PKG_VERSION"));
    println!("adapters wgpu sees:");
    for (i, a) in survey.adapters.iter().enumerate() {
        let mark = if Some(i) == survey.chosen { "*" } else { " " };
        println!(
            " {mark} [{i}] {}  backend {:?}, type {:?}, driver {} {}",
            a.info.name, a.info.backend, a.info.device_type, a.info.driver, a.info.driver_info
        );
    }
    println!("chosen: {}", describe(&chosen.info));
    println!("limits:");
    for (name, value) in &limits {
        if name.contains("size") && *value >= 1024 && !name.contains("workgroup_size") {
            println!("  {name:<40} {value} ({})", human_bytes(*value));
        } else {
            println!("  {name:<40} {value}");
        }
    }
    println!("features lim uses:");
    for (name, present) in &features {
        println!("  {name:<40} {}", if *present { "yes" } else { "no" });
    }
    println!(
        "  {:<40} {}..{}",
        "subgroup size", chosen.info.subgroup_min_size, chosen.info.subgroup_max_size
    );
    match cache {
        Some(path) => println!("autotune cache: {path}"),
        None => println!("autotune cache: none (no cache directory)"),
    }
    Ok(())
}
