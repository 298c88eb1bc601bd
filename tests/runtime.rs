//! The GPU runtime: adapter choice errors, pipeline cache, buffer pool, one submission for
//! many dispatches, batched readback, timestamps, autotune cache, f16 storage, limits.

mod common;

use std::sync::Arc;

use common::{gpu, random};
use lim::gpu::shader;
use lim::gpu::{GpuOptions, Tuning};
use lim::ops::matmul::{MatmulDims, MatmulOptions};
use lim::{DType, Error, Gpu, GpuError, Tensor};

/// A device of its own, for tests that count what the runtime does.
fn private_gpu(tuning: Tuning) -> Arc<Gpu> {
    let mut opts = GpuOptions::from_env().unwrap();
    opts.tuning = tuning;
    Gpu::new(&opts).unwrap()
}

#[test]
fn an_adapter_that_does_not_exist_is_a_clear_error() {
    let opts = GpuOptions {
        adapter: Some("no-such-adapter-42".into()),
        ..GpuOptions::default()
    };
    let err = Gpu::new(&opts).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GpuError::NoAdapter { .. }), "{text}");
    assert!(
        text.contains("no-such-adapter-42") && text.contains(&gpu().info().name),
        "{text}"
    );
    let err = "cuda".parse::<lim::gpu::BackendChoice>().unwrap_err();
    assert!(err.to_string().contains("vulkan, metal, dx12, gl"), "{err}");
}

#[test]
fn the_device_has_the_adapters_limits_and_the_wanted_features_it_offers() {
    let gpu = gpu();
    // lim asks for the adapter's own limits, not WebGPU's defaults.
    assert!(
        gpu.limits().max_storage_buffer_binding_size
            >= wgpu::Limits::default().max_storage_buffer_binding_size
    );
    let survey = lim::gpu::survey(&GpuOptions::from_env().unwrap());
    let chosen = &survey.adapters[survey.chosen.unwrap()];
    assert_eq!(chosen.info.name, gpu.info().name);
    assert_eq!(
        chosen.limits.max_storage_buffer_binding_size,
        gpu.limits().max_storage_buffer_binding_size
    );
    assert_eq!(gpu.features(), chosen.features & lim::gpu::WANTED_FEATURES);
}

#[test]
fn pipelines_are_compiled_once_per_entry_and_specialisation() {
    let gpu = private_gpu(Tuning::Off);
    let a = gpu
        .kernel(&shader::REDUCE, "tree", &[("OP", 0.0), ("WG", 64.0)])
        .unwrap();
    let b = gpu
        .kernel(&shader::REDUCE, "tree", &[("WG", 64.0), ("OP", 0.0)])
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b), "same constants in another order");
    let c = gpu
        .kernel(&shader::REDUCE, "tree", &[("OP", 0.0), ("WG", 256.0)])
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    gpu.kernel(&shader::REDUCE, "serial", &[("OP", 0.0)])
        .unwrap();
    assert_eq!(gpu.compiled_kernels(), 3);
    let err = gpu
        .kernel(&shader::REDUCE, "no_such_entry", &[])
        .unwrap_err();
    assert!(
        matches!(err, GpuError::Shader { .. }) && err.to_string().contains("reduce"),
        "{err}"
    );
}

#[test]
fn buffers_are_reused_by_size_class() {
    let gpu = private_gpu(Tuning::Off);
    let t = Tensor::from_slice(&gpu, &[1000], &random(1000, 1)).unwrap();
    let y = t.scale(2.0).unwrap();
    y.to_vec().unwrap();
    drop((t, y));
    gpu.sync().unwrap();
    let cached = gpu.pool_stats();
    assert!(cached.cached_buffers >= 2, "{cached:?}");
    // 990 elements fall in the same size class as 1000: no new storage buffer.
    let again = Tensor::from_slice(&gpu, &[990], &random(990, 2)).unwrap();
    assert_eq!(gpu.pool_stats().cached_buffers, cached.cached_buffers - 1);
    drop(again);
    gpu.trim_pool();
    assert_eq!(gpu.pool_stats().cached_bytes, 0);
}

#[test]
fn many_dispatches_go_out_in_one_submission() {
    let gpu = private_gpu(Tuning::Off);
    let x = Tensor::from_slice(&gpu, &[300], &vec![1.0; 300]).unwrap();
    gpu.sync().unwrap();
    let before = gpu.counters().submissions;
    for _ in 0..20 {
        x.add_(&x).unwrap();
    }
    assert_eq!(
        gpu.counters().submissions,
        before,
        "nothing is submitted while recording"
    );
    let got = x.to_vec().unwrap();
    assert_eq!(
        gpu.counters().submissions,
        before + 1,
        "the readback submits everything at once"
    );
    assert!(
        got.iter().all(|&v| v == (1u32 << 20) as f32),
        "{:?}",
        &got[..4]
    );
}

#[test]
fn several_tensors_are_read_back_with_one_map() {
    let gpu = private_gpu(Tuning::Off);
    let hosts: Vec<Vec<f32>> = [1, 7, 64, 1001]
        .iter()
        .map(|&n| random(n, n as u64))
        .collect();
    let tensors: Vec<Tensor> = hosts
        .iter()
        .map(|h| Tensor::from_slice(&gpu, &[h.len()], h).unwrap())
        .collect();
    gpu.sync().unwrap();
    let before = gpu.counters().submissions;
    let got = Tensor::to_vecs(&tensors.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(gpu.counters().submissions, before + 1);
    assert_eq!(got, hosts);
}

#[test]
fn gpu_timestamps_measure_recorded_work() {
    let gpu = gpu();
    let a = Tensor::from_slice(&gpu, &[128, 128], &random(128 * 128, 3)).unwrap();
    let (c, timing) = gpu.time(|| a.matmul(&a)).unwrap();
    assert_eq!(c.shape(), &[128, 128]);
    assert!(timing.wall.as_nanos() > 0);
    if gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        let t = timing.gpu.expect("the adapter has timestamp queries");
        assert!(t.as_nanos() > 0 && t <= timing.wall, "{timing:?}");
    } else {
        assert!(timing.gpu.is_none());
    }
}

#[test]
fn autotune_choices_persist_on_disk_per_adapter() {
    let dir = std::env::temp_dir().join(format!("lim-autotune-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = private_gpu(Tuning::Dir(dir.clone()));
    let a = Tensor::from_slice(&first, &[24, 16], &random(24 * 16, 4)).unwrap();
    let b = Tensor::from_slice(&first, &[16, 36], &random(16 * 36, 5)).unwrap();
    let key = MatmulDims::infer(a.shape(), b.shape(), MatmulOptions::default())
        .unwrap()
        .tune_key();
    assert!(first.tuned(&key).is_none());
    a.matmul(&b).unwrap();
    let record = first.tuned(&key).expect("tuned on first use");
    assert!(
        record.micros.len() > 2 && record.micros.contains_key(&record.choice),
        "{record:?}"
    );
    let path = first.tune_cache_path().unwrap().to_path_buf();
    assert!(path.starts_with(&dir) && path.exists(), "{path:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&first.info().name) && text.contains(&key),
        "{text}"
    );
    // A new process (here: a new device) reads the choice instead of timing again.
    let second = private_gpu(Tuning::Dir(dir.clone()));
    assert_eq!(second.tuned(&key), Some(record));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn f16_storage_round_trips_and_casts_on_the_gpu() {
    let gpu = gpu();
    let host = [0.1f32, -2.5, 65504.0, 1e-3, 2.5e-2, -0.0, 7.0];
    if !gpu.features().contains(wgpu::Features::SHADER_F16) {
        let err = Tensor::from_slice_as(&gpu, &[7], &host, DType::F16).unwrap_err();
        assert!(err.to_string().contains("SHADER_F16"), "{err}");
        return;
    }
    let rounded: Vec<f32> = host
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    let h = Tensor::from_slice_as(&gpu, &[7], &host, DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(h.to_vec().unwrap(), rounded);
    let f = h.cast(DType::F32).unwrap();
    assert_eq!(f.to_vec().unwrap(), rounded, "f16 -> f32 is exact");
    let x = Tensor::from_slice(&gpu, &[7], &host).unwrap();
    let back = x.cast(DType::F16).unwrap().to_vec().unwrap();
    for ((&b, &r), &v) in back.iter().zip(&rounded).zip(&host) {
        // WGSL leaves f32 -> f16 rounding to the implementation: nearest or a neighbour.
        let ulp = r.abs() * 2f32.powi(-10);
        assert!((b - r).abs() <= ulp, "{v} -> {b}, expected {r}");
    }
}

#[test]
fn a_buffer_beyond_the_adapters_maximum_is_refused() {
    let gpu = gpu();
    let n = (gpu.limits().max_buffer_size / 4 + 1) as usize;
    let err = Tensor::zeros(&gpu, &[n], DType::F32).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Gpu(GpuError::LimitExceeded {
                limit: "max_buffer_size",
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&gpu.info().name), "{err}");
}

#[test]
fn zeros_and_reshape_share_or_fill_storage() {
    let gpu = gpu();
    let z = Tensor::zeros(&gpu, &[3, 5], DType::F32).unwrap();
    assert_eq!(z.to_vec().unwrap(), vec![0.0; 15]);
    let r = z.reshape(&[5, 3]).unwrap();
    assert!(r.same_storage(&z));
    assert!(z.reshape(&[4, 4]).is_err());
}

/// A device lost under lim (destroyed here, as a driver reset or an unplugged eGPU would
/// leave it) makes every later call an error that says so: no panic and no hang.
#[test]
fn a_lost_device_is_an_error_not_a_panic_or_a_hang() {
    let gpu = private_gpu(Tuning::Off);
    let a = Tensor::from_slice(&gpu, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(
        a.matmul(&a).unwrap().to_vec().unwrap(),
        [7.0, 10.0, 15.0, 22.0]
    );
    gpu.device().destroy();
    let outcome = a
        .matmul(&a)
        .and_then(|c| c.to_vec())
        .and_then(|_| Tensor::from_slice(&gpu, &[3], &[1.0, 2.0, 3.0])?.to_vec());
    let err = outcome.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("lost"), "{err}");
}
