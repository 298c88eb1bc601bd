//! One compiled pipeline per shader entry point and specialisation (rewritten `const`s and
//! pipeline override constants), compiled on first use and shared afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::reflect::{EntryBindings, entry_bindings};
use super::shader::{Shader, specialise, with_f16_operands};
use super::{Gpu, GpuError, feature_name};

/// A compiled compute pipeline and the layout of its bind group 0.
#[derive(Debug)]
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: String,
    /// The name of the shader it was compiled from.
    pub shader: &'static str,
    /// What its entry point binds in group 0: `(binding, WGSL variable name)`.
    pub bindings: Vec<(u32, String)>,
}

/// A shader with its specialised `const`s and whether its operands are f16.
type ModuleKey = (&'static str, Vec<(String, u32)>, bool);

#[derive(Hash, PartialEq, Eq)]
struct Key {
    module: ModuleKey,
    entry: String,
    /// Override constants, by name, as f64 bit patterns (f64 is not `Eq`).
    constants: Vec<(String, u64)>,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
    /// Each shader's entry points' bindings, by shader name.
    reflected: Mutex<HashMap<&'static str, Arc<EntryBindings>>>,
    kernels: Mutex<HashMap<Key, Arc<Kernel>>>,
}

impl PipelineCache {
    pub(crate) fn len(&self) -> usize {
        self.kernels.lock().unwrap().len()
    }
}

impl Gpu {
    /// The pipeline for `entry` of `shader` with override `constants`, compiled on first use.
    pub fn kernel(
        &self,
        shader: &'static Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>, GpuError> {
        self.specialised_kernel(shader, &[], entry, constants)
    }

    /// The pipeline for `entry` of `shader` with its `consts` rewritten (see
    /// [`specialise`]) and override `constants`, compiled on first use.
    pub fn specialised_kernel(
        &self,
        shader: &'static Shader,
        consts: &[(&str, u32)],
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>, GpuError> {
        self.operand_kernel(shader, consts, false, entry, constants)
    }

    /// As [`Gpu::specialised_kernel`], with the shader's operand type alias rewritten to f16
    /// where `f16_operands` (see [`with_f16_operands`]); that needs SHADER_F16.
    pub fn operand_kernel(
        &self,
        shader: &'static Shader,
        consts: &[(&str, u32)],
        f16_operands: bool,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>, GpuError> {
        let mut overrides: Vec<(String, u64)> = constants
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_bits()))
            .collect();
        overrides.sort();
        let mut specialised: Vec<(String, u32)> =
            consts.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        specialised.sort();
        let key = Key {
            module: (shader.name, specialised, f16_operands),
            entry: entry.to_string(),
            constants: overrides,
        };
        if let Some(kernel) = self.pipelines.kernels.lock().unwrap().get(&key) {
            return Ok(kernel.clone());
        }
        let mut needs = shader.features;
        if f16_operands {
            needs |= wgpu::Features::SHADER_F16;
        }
        let missing = needs - self.features;
        if !missing.is_empty() {
            return Err(GpuError::MissingFeature {
                what: format!("shader {}", shader.name),
                feature: feature_name(missing),
                adapter: self.info.name.clone(),
            });
        }
        let spec: Vec<String> = consts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(constants.iter().map(|(k, v)| format!("{k}={v}")))
            .chain(f16_operands.then(|| "f16".to_string()))
            .collect();
        let label = if spec.is_empty() {
            format!("{}::{entry}", shader.name)
        } else {
            format!("{}::{entry}[{}]", shader.name, spec.join(","))
        };
        let module = self.module(shader, &key.module)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // Kernels initialise the shared memory they read.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(self.shader_error(&label, err));
        }
        let bindings = self
            .reflect(shader)?
            .get(entry)
            .cloned()
            .unwrap_or_default();
        let kernel = Arc::new(Kernel {
            layout: pipeline.get_bind_group_layout(0),
            pipeline,
            label,
            shader: shader.name,
            bindings,
        });
        self.pipelines
            .kernels
            .lock()
            .unwrap()
            .insert(key, kernel.clone());
        Ok(kernel)
    }

    /// `shader`'s entry points' bindings, reflected once.
    fn reflect(&self, shader: &'static Shader) -> Result<Arc<EntryBindings>, GpuError> {
        let mut reflected = self.pipelines.reflected.lock().unwrap();
        if let Some(found) = reflected.get(shader.name) {
            return Ok(found.clone());
        }
        let found = Arc::new(
            entry_bindings(shader.source)
                .map_err(|e| GpuError::Validation(format!("shaders/{}.wgsl: {e}", shader.name)))?,
        );
        reflected.insert(shader.name, found.clone());
        Ok(found)
    }

    fn module(
        &self,
        shader: &'static Shader,
        key: &ModuleKey,
    ) -> Result<wgpu::ShaderModule, GpuError> {
        if let Some(module) = self.pipelines.modules.lock().unwrap().get(key) {
            return Ok(module.clone());
        }
        let consts: Vec<(&str, u32)> = key.1.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let source = specialise(shader.source, &consts)
            .and_then(|s| match key.2 {
                true => with_f16_operands(&s),
                false => Ok(s),
            })
            .map_err(|message| GpuError::Shader {
                shader: shader.name.to_string(),
                adapter: self.info.name.clone(),
                message,
            })?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = match self.bounds_checks {
            true => self.device.create_shader_module(desc),
            // SAFETY: every kernel bounds-checks its own indices (and the tests check them on
            // awkward shapes), so on lim's own device the clamps wgpu would add cost speed
            // and buy nothing.
            false => unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            },
        };
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(self.shader_error(shader.name, err));
        }
        self.pipelines
            .modules
            .lock()
            .unwrap()
            .insert(key.clone(), module.clone());
        Ok(module)
    }

    fn shader_error(&self, shader: &str, err: wgpu::Error) -> GpuError {
        GpuError::Shader {
            shader: shader.to_string(),
            adapter: self.info.name.clone(),
            message: err.to_string(),
        }
    }
}
