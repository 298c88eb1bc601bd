//! Named tensors in and out: torchvision-style initialisation, and safetensors files under
//! torchvision's names (`num_batches_tracked` as int64, as PyTorch writes it).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use safetensors::{Dtype, SafeTensors};

use super::{Init, Source, Visit};
use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::IoError;
use crate::io::torch::Values;
use crate::tensor::Tensor;

/// One named tensor of a module.
pub enum Entry<'a> {
    Param(&'a Var),
    Buffer(&'a Tensor),
    Count(u64),
}

/// Initialises every tensor as torchvision does, from a seed.
pub struct Random {
    gpu: Arc<Gpu>,
    rng: StdRng,
}

impl Random {
    pub fn new(gpu: &Arc<Gpu>, seed: u64) -> Random {
        Random {
            gpu: gpu.clone(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A standard normal sample (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u: f64 = 1.0 - self.rng.random_range(0.0..1.0);
        let v: f64 = self.rng.random_range(0.0..1.0);
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

impl Source for Random {
    fn tensor(&mut self, _name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            Init::Const(v) => vec![v; n],
            Init::Uniform(bound) => (0..n)
                .map(|_| self.rng.random_range(-bound..bound))
                .collect(),
            Init::KaimingNormalFanOut => {
                let fan_out = shape[0] * shape[2..].iter().product::<usize>();
                let std = (2.0 / fan_out as f32).sqrt();
                (0..n).map(|_| std * self.normal()).collect()
            }
        };
        Tensor::from_slice(&self.gpu, shape, &values)
    }

    fn count(&mut self, _name: &str) -> Result<u64> {
        Ok(0)
    }
}

/// The tensors of a safetensors file, handed out by name; [`StateDict::finish`] checks that
/// every one was used.
pub struct StateDict {
    gpu: Arc<Gpu>,
    file: String,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    counts: HashMap<String, i64>,
    metadata: HashMap<String, String>,
}

fn invalid(path: &str, why: String) -> Error {
    Error::Io(IoError::invalid(Path::new(path), why))
}

/// The tensors of a checkpoint file, read (on the CPU) and checked, by name.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// f32 tensors: shape and values.
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// int64 scalars (BatchNorm's `num_batches_tracked`).
    pub counts: HashMap<String, i64>,
    /// A safetensors file's `__metadata__`.
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// Reads `path`, a safetensors file or a PyTorch checkpoint (`torch.save`'s zip, read by
    /// [`crate::io::torch::load_state_dict`]'s rules): f32 (or f64, f16, bf16, converted)
    /// tensors and int64 counters.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let file = path.display().to_string();
        crate::io::require_regular(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::Io(IoError::io(path, e)))?;
        let mut out = Checkpoint::default();
        if bytes.starts_with(b"PK\x03\x04") {
            for (name, shape, values) in crate::io::torch::load_state_dict(path)? {
                match values {
                    Values::F32(v) => {
                        out.tensors.insert(name, (shape, v));
                    }
                    Values::I64(v) if v.len() == 1 => {
                        out.counts.insert(name, v[0]);
                    }
                    Values::I64(_) => {
                        return Err(invalid(
                            &file,
                            format!("{name}: integer tensors are not supported"),
                        ));
                    }
                }
            }
            return Ok(out);
        }
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| invalid(&file, format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| invalid(&file, format!("not a safetensors file: {e}")))?;
        out.metadata = header.metadata().clone().unwrap_or_default();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::I64 if view.shape().iter().product::<usize>() == 1 => {
                    out.counts
                        .insert(name, i64::from_le_bytes(data[..8].try_into().unwrap()));
                    continue;
                }
                other => {
                    return Err(invalid(
                        &file,
                        format!("{name}: tensors of {other:?} are not supported"),
                    ));
                }
            };
            out.tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(out)
    }
}

impl StateDict {
    /// Reads `path` ([`Checkpoint::read`]) for loading onto `gpu`.
    pub fn load(gpu: &Arc<Gpu>, path: &Path) -> Result<StateDict> {
        let Checkpoint {
            tensors,
            counts,
            metadata,
        } = Checkpoint::read(path)?;
        Ok(StateDict {
            gpu: gpu.clone(),
            file: path.display().to_string(),
            tensors,
            counts,
            metadata,
        })
    }

    /// The file's `__metadata__` (string pairs).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The file, for messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Takes the tensor `name` out, if the file has it, onto the device.
    pub fn take(&mut self, name: &str) -> Result<Option<Tensor>> {
        match self.tensors.remove(name) {
            Some((shape, values)) => Tensor::from_slice(&self.gpu, &shape, &values).map(Some),
            None => Ok(None),
        }
    }

    /// Leaves out the tensors under `prefix` (such as a classifier `fc.` a feature extractor
    /// does not have).
    pub fn skip(&mut self, prefix: &str) {
        self.tensors.retain(|name, _| !name.starts_with(prefix));
        self.counts.retain(|name, _| !name.starts_with(prefix));
    }

    /// Fails if the file holds tensors the network did not ask for (as PyTorch's strict
    /// `load_state_dict`).
    pub fn finish(self) -> Result<()> {
        let left: Vec<&String> = self.tensors.keys().chain(self.counts.keys()).collect();
        if !left.is_empty() {
            return Err(invalid(
                &self.file,
                format!("unexpected tensors for this network: {left:?}"),
            ));
        }
        Ok(())
    }
}

impl Source for StateDict {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor> {
        let (stored, values) = self
            .tensors
            .remove(name)
            .ok_or_else(|| invalid(&self.file, format!("{name} is missing")))?;
        if stored != shape {
            return Err(invalid(
                &self.file,
                format!("{name} has shape {stored:?}, the network needs {shape:?}"),
            ));
        }
        Tensor::from_slice(&self.gpu, shape, &values)
    }

    fn count(&mut self, name: &str) -> Result<u64> {
        // Files from older PyTorch versions lack the counter; PyTorch then starts at 0.
        Ok(self.counts.remove(name).unwrap_or(0).max(0) as u64)
    }
}

/// Writes every tensor of `module` to `path` as safetensors under its name.
pub fn save(module: &dyn Visit, path: &Path) -> Result<()> {
    save_with(module, &[], &HashMap::new(), path)
}

/// Writes every tensor of `module`, then the `extra` named tensors, to `path` as safetensors
/// with `metadata`; the file is written under a temporary name and renamed into place.
pub fn save_with(
    module: &dyn Visit,
    extra: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let mut names = Vec::new();
    let mut tensors = Vec::new();
    let mut counts = Vec::new();
    module.visit("", &mut |name, entry| match entry {
        Entry::Param(v) => {
            names.push(name);
            tensors.push(v.value().clone());
        }
        Entry::Buffer(t) => {
            names.push(name);
            tensors.push(t.clone());
        }
        Entry::Count(c) => counts.push((name, (c as i64).to_le_bytes().to_vec())),
    });
    for (name, t) in extra {
        names.push(name.clone());
        tensors.push(t.clone());
    }
    let values = Tensor::to_vecs(&tensors.iter().collect::<Vec<_>>())?;
    let bytes: Vec<Vec<u8>> = values
        .iter()
        .map(|v| bytemuck::cast_slice(v).to_vec())
        .collect();
    let mut views = Vec::new();
    for ((name, t), b) in names.iter().zip(&tensors).zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, t.shape().to_vec(), b)
            .map_err(|e| invalid(&path.display().to_string(), format!("{name}: {e}")))?;
        views.push((name.clone(), view));
    }
    for (name, b) in &counts {
        let view = safetensors::tensor::TensorView::new(Dtype::I64, vec![], b)
            .map_err(|e| invalid(&path.display().to_string(), format!("{name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = (!metadata.is_empty()).then(|| metadata.clone());
    let bytes = safetensors::serialize(views, metadata).map_err(|e| {
        invalid(
            &path.display().to_string(),
            format!("cannot serialise: {e}"),
        )
    })?;
    Ok(crate::io::write_atomic(path, &bytes)?)
}
