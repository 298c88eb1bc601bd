//! Adapter discovery and choice: every adapter wgpu offers, ranked, filtered by the user's
//! `--adapter` / `--backend` (or `LIM_ADAPTER` / `LIM_BACKEND`).

use std::str::FromStr;

use super::GpuError;
use super::autotune::Tuning;

/// A backend the user can ask for by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
}

impl FromStr for BackendChoice {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(Self::Vulkan),
            "metal" | "mtl" => Ok(Self::Metal),
            "dx12" | "d3d12" => Ok(Self::Dx12),
            "gl" | "gles" | "opengl" => Ok(Self::Gl),
            _ => Err(GpuError::UnknownBackend(s.to_string())),
        }
    }
}

/// How to pick and set up the GPU.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name; `None` takes the highest-ranked adapter.
    pub adapter: Option<String>,
    /// The adapter at this place in `lim info`'s list (which tells apart two GPUs of one
    /// name); it overrides `adapter`.
    pub device: Option<usize>,
    /// Restrict the search to one backend.
    pub backend: Option<BackendChoice>,
    /// Where the autotuner keeps its choices.
    pub tuning: Tuning,
    /// Bind at most this many bytes of a storage buffer, below the adapter's own limit: to
    /// try how lim splits large tensors, as on an adapter with a smaller limit.
    pub max_binding_bytes: Option<u64>,
    /// Keep wgpu's shader bounds checks on lim's own device too (they are always on for a
    /// device the caller owns): to measure what they cost.
    pub bounds_checks: bool,
}

impl GpuOptions {
    /// Options from `LIM_ADAPTER`, `LIM_BACKEND` and `LIM_TUNING` (by default the on-disk
    /// autotune cache).
    pub fn from_env() -> Result<Self, GpuError> {
        let nonempty = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Ok(Self {
            adapter: nonempty("LIM_ADAPTER"),
            device: None,
            backend: nonempty("LIM_BACKEND").map(|b| b.parse()).transpose()?,
            tuning: nonempty("LIM_TUNING")
                .map(|t| t.parse())
                .transpose()?
                .unwrap_or_default(),
            max_binding_bytes: None,
            bounds_checks: false,
        })
    }

    fn backends(&self) -> wgpu::Backends {
        self.backend
            .map_or(wgpu::Backends::all(), BackendChoice::backends)
    }

    fn describe_wanted(&self) -> Option<String> {
        if let Some(i) = self.device {
            return Some(format!("device {i}"));
        }
        match (&self.adapter, self.backend) {
            (None, None) => None,
            (a, b) => Some(
                [
                    a.as_ref().map(|a| format!("name `{a}`")),
                    b.map(|b| format!("backend {b:?}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and "),
            ),
        }
    }
}

/// What `lim info` shows about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
}

/// Every adapter wgpu offers for the options' backends, and the index of the one lim would use.
pub struct Survey {
    pub adapters: Vec<AdapterReport>,
    pub chosen: Option<usize>,
}

pub(super) fn instance(opts: &GpuOptions) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = opts.backends();
    wgpu::Instance::new(desc)
}

/// Lower is better: real GPUs first, then native backends before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (device, backend)
}

/// One line naming an adapter, as errors and `lim info` print it.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
    .replace("  ", " ")
    .replace(" )", ")")
}

fn index_of_choice(infos: &[wgpu::AdapterInfo], opts: &GpuOptions) -> Option<usize> {
    if let Some(i) = opts.device {
        return (i < infos.len()).then_some(i);
    }
    let wanted = opts.adapter.as_ref().map(|s| s.to_lowercase());
    infos
        .iter()
        .enumerate()
        .filter(|(_, info)| {
            wanted
                .as_ref()
                .is_none_or(|w| info.name.to_lowercase().contains(w))
        })
        .min_by_key(|(i, info)| (rank(info), *i))
        .map(|(i, _)| i)
}

pub(super) fn enumerate(instance: &wgpu::Instance, opts: &GpuOptions) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(opts.backends()))
}

/// The adapter the options select, or an error that lists what there is.
pub(super) fn choose(
    adapters: Vec<wgpu::Adapter>,
    opts: &GpuOptions,
) -> Result<wgpu::Adapter, GpuError> {
    let infos: Vec<_> = adapters.iter().map(|a| a.get_info()).collect();
    match index_of_choice(&infos, opts) {
        Some(i) => Ok(adapters
            .into_iter()
            .nth(i)
            .expect("index from the same list")),
        None => Err(GpuError::NoAdapter {
            wanted: opts.describe_wanted(),
            available: infos.iter().map(describe).collect(),
        }),
    }
}

/// The places in `lim info`'s list of the adapters like the one the options choose (the same
/// kind of device on the same backend): what `--devices all` trains on.
pub fn alike(opts: &GpuOptions) -> Result<Vec<usize>, GpuError> {
    let adapters = enumerate(&instance(opts), opts);
    let infos: Vec<_> = adapters.iter().map(|a| a.get_info()).collect();
    let Some(chosen) = index_of_choice(&infos, opts) else {
        return Err(GpuError::NoAdapter {
            wanted: opts.describe_wanted(),
            available: infos.iter().map(describe).collect(),
        });
    };
    let kind = |i: &wgpu::AdapterInfo| (i.device_type, i.backend);
    Ok((0..infos.len())
        .filter(|&i| kind(&infos[i]) == kind(&infos[chosen]))
        .collect())
}

/// Every adapter for the options' backends, with the one lim would choose marked.
pub fn survey(opts: &GpuOptions) -> Survey {
    let adapters: Vec<AdapterReport> = enumerate(&instance(opts), opts)
        .iter()
        .map(|a| AdapterReport {
            info: a.get_info(),
            features: a.features(),
            limits: a.limits(),
        })
        .collect();
    let infos: Vec<_> = adapters.iter().map(|a| a.info.clone()).collect();
    let chosen = index_of_choice(&infos, opts);
    Survey { adapters, chosen }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        name: &str,
        backend: wgpu::Backend,
        device_type: wgpu::DeviceType,
    ) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            ..wgpu::AdapterInfo::new(device_type, backend)
        }
    }

    #[test]
    fn prefers_discrete_then_native_backend_then_name_filter() {
        use wgpu::{Backend::*, DeviceType::*};
        let infos = [
            info("llvmpipe (LLVM 15)", Gl, Cpu),
            info("llvmpipe (LLVM 15)", Vulkan, Cpu),
            info("Intel Iris", Vulkan, IntegratedGpu),
            info("AMD Radeon RX", Vulkan, DiscreteGpu),
        ];
        let mut opts = GpuOptions::default();
        assert_eq!(index_of_choice(&infos, &opts), Some(3));
        opts.adapter = Some("LLVMPIPE".into());
        assert_eq!(index_of_choice(&infos, &opts), Some(1));
        opts.adapter = Some("iris".into());
        assert_eq!(index_of_choice(&infos, &opts), Some(2));
        opts.adapter = Some("nvidia".into());
        assert_eq!(index_of_choice(&infos, &opts), None);
    }

    #[test]
    fn backend_names_parse_and_unknown_ones_are_rejected() {
        assert_eq!(
            "Vulkan".parse::<BackendChoice>().unwrap(),
            BackendChoice::Vulkan
        );
        assert_eq!(
            "dx12".parse::<BackendChoice>().unwrap(),
            BackendChoice::Dx12
        );
        assert_eq!("gl".parse::<BackendChoice>().unwrap(), BackendChoice::Gl);
        let err = "cuda".parse::<BackendChoice>().unwrap_err().to_string();
        assert!(err.contains("cuda") && err.contains("vulkan"), "{err}");
    }
}
