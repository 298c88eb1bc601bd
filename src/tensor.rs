//! A tensor on the GPU: a shape, an element type and a buffer. Clones share the buffer, as
//! PyTorch tensors share storage; the in-place ops change it for every clone.

use std::sync::Arc;

pub use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::uniform::CastParams;
use crate::gpu::{Gpu, GpuError, PooledBuffer, shader};

#[derive(Clone)]
pub struct Tensor {
    gpu: Arc<Gpu>,
    shape: Vec<usize>,
    dtype: DType,
    buffer: Arc<PooledBuffer>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Uploads `data` (row-major) as an f32 tensor of `shape`.
    pub fn from_slice(gpu: &Arc<Gpu>, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        Self::from_slice_as(gpu, shape, data, DType::F32)
    }

    /// Uploads `data`, stored as `dtype` (f16 values are rounded to nearest, ties to even).
    pub fn from_slice_as(
        gpu: &Arc<Gpu>,
        shape: &[usize],
        data: &[f32],
        dtype: DType,
    ) -> Result<Tensor> {
        if numel_of(shape) != data.len() {
            return Err(Error::InvalidArgument {
                op: "from_slice",
                why: format!(
                    "shape {shape:?} holds {} elements but {} were given",
                    numel_of(shape),
                    data.len()
                ),
            });
        }
        Self::require_dtype(gpu, dtype)?;
        let bytes: Vec<u8> = match dtype {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::F16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        };
        let buffer = gpu.upload(&bytes, "tensor")?;
        Ok(Self::wrap(gpu, shape, dtype, buffer))
    }

    /// A tensor of zeros.
    pub fn zeros(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = Self::uninit(gpu, shape, dtype)?;
        gpu.with_encoder(|e| e.clear_buffer(&t.buffer, 0, None));
        Ok(t)
    }

    /// A tensor whose contents the caller will write before reading.
    pub(crate) fn uninit(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Self::require_dtype(gpu, dtype)?;
        let bytes = (numel_of(shape) * dtype.size()) as u64;
        let buffer = gpu.buffer(bytes.next_multiple_of(4), crate::gpu::STORAGE, "tensor")?;
        Ok(Self::wrap(gpu, shape, dtype, buffer))
    }

    fn wrap(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType, buffer: PooledBuffer) -> Tensor {
        Tensor {
            gpu: gpu.clone(),
            shape: shape.to_vec(),
            dtype,
            buffer: Arc::new(buffer),
        }
    }

    fn require_dtype(gpu: &Gpu, dtype: DType) -> Result<()> {
        if dtype == DType::F16 && !gpu.features().contains(wgpu::Features::SHADER_F16) {
            return Err(GpuError::MissingFeature {
                what: "f16 tensor storage".into(),
                feature: "SHADER_F16",
                adapter: gpu.info().name.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// The one dtype check of every op: `Error::DType` naming `op` unless this tensor holds
    /// `expected`.
    pub fn expect_dtype(&self, op: &'static str, expected: DType) -> Result<()> {
        if self.dtype != expected {
            return Err(Error::DType {
                op,
                expected,
                got: self.dtype,
            });
        }
        Ok(())
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        numel_of(&self.shape)
    }

    /// The buffer behind the tensor; it may be longer than the tensor (pool size classes).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Bytes the elements take, padded to a multiple of 4.
    pub fn byte_len(&self) -> u64 {
        ((self.numel() * self.dtype.size()) as u64).next_multiple_of(4)
    }

    /// The whole tensor as one binding; fails if it exceeds the adapter's binding limit.
    pub(crate) fn binding(&self, what: &str) -> Result<wgpu::BufferBinding<'_>> {
        self.gpu.check_binding(what, self.byte_len())?;
        Ok(self.binding_range(0, self.byte_len()))
    }

    pub(crate) fn binding_range(&self, offset: u64, size: u64) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset,
            size: wgpu::BufferSize::new(size.max(4)),
        }
    }

    /// Whether two tensors share storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buffer, &other.buffer)
    }

    /// The same storage under another shape with as many elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel_of(shape) != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape.to_vec(),
                why: "element counts differ".into(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Entries `start .. start + len` along the first axis (the batch), copied.
    pub fn slice_batch(&self, start: usize, len: usize) -> Result<Tensor> {
        let n = self.shape.first().copied().unwrap_or(0);
        if start + len > n || len == 0 {
            return Err(Error::InvalidArgument {
                op: "slice_batch",
                why: format!("entries {start}..{} of a batch of {n}", start + len),
            });
        }
        let mut shape = self.shape.clone();
        shape[0] = len;
        let part = Self::uninit(&self.gpu, &shape, self.dtype)?;
        let entry = self.numel() / n * self.dtype.size();
        if !entry.is_multiple_of(4) {
            return Err(Error::InvalidArgument {
                op: "slice_batch",
                why: format!("batch entries of {entry} bytes are not whole words"),
            });
        }
        self.gpu.with_encoder(|e| {
            e.copy_buffer_to_buffer(
                &self.buffer,
                (start * entry) as u64,
                &part.buffer,
                0,
                (len * entry) as u64,
            )
        });
        Ok(part)
    }

    /// The tensors one after another along the first axis (the batch), copied.
    pub fn concat_batch(parts: &[&Tensor]) -> Result<Tensor> {
        let Some(first) = parts.first() else {
            return Err(Error::InvalidArgument {
                op: "concat_batch",
                why: "nothing to concatenate".into(),
            });
        };
        let tail = &first.shape[1.min(first.shape.len())..];
        if let Some(odd) = parts
            .iter()
            .find(|p| p.shape.is_empty() || &p.shape[1..] != tail || p.dtype != first.dtype)
        {
            return Err(Error::ShapeMismatch {
                op: "concat_batch",
                lhs: first.shape.clone(),
                rhs: odd.shape.clone(),
                why: "all but the first axis must agree, and the dtypes".into(),
            });
        }
        if let Some(odd) = parts.iter().find(|p| p.numel() * p.dtype.size() % 4 != 0) {
            return Err(Error::InvalidArgument {
                op: "concat_batch",
                why: format!("a part of shape {:?} is not whole words", odd.shape),
            });
        }
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let out = Self::uninit(&first.gpu, &shape, first.dtype)?;
        first.gpu.with_encoder(|e| {
            let mut offset = 0;
            for p in parts {
                e.copy_buffer_to_buffer(&p.buffer, 0, &out.buffer, offset, p.byte_len());
                offset += p.byte_len();
            }
        });
        Ok(out)
    }

    /// A copy with its own storage.
    pub fn deep_clone(&self) -> Result<Tensor> {
        let copy = Self::uninit(&self.gpu, &self.shape, self.dtype)?;
        self.gpu.with_encoder(|e| {
            e.copy_buffer_to_buffer(&self.buffer, 0, &copy.buffer, 0, self.byte_len())
        });
        Ok(copy)
    }

    /// Overwrites this tensor's elements (and so every clone's) with `src`'s.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.shape != self.shape || src.dtype != self.dtype {
            return Err(Error::ShapeMismatch {
                op: "copy_from",
                lhs: self.shape.clone(),
                rhs: src.shape.clone(),
                why: format!(
                    "needs equal shapes and dtypes ({:?}, {:?})",
                    self.dtype, src.dtype
                ),
            });
        }
        self.gpu.with_encoder(|e| {
            e.copy_buffer_to_buffer(&src.buffer, 0, &self.buffer, 0, self.byte_len())
        });
        Ok(())
    }

    /// Downloads the elements as f32.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        Ok(Self::to_vecs(&[self])?.remove(0))
    }

    /// Downloads several tensors with one submission and one map.
    pub fn to_vecs(tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        let Some(first) = tensors.first() else {
            return Ok(Vec::new());
        };
        let parts: Vec<_> = tensors
            .iter()
            .map(|t| (t.buffer(), 0, t.byte_len()))
            .collect();
        let bytes = first.gpu.read(&parts)?;
        Ok(tensors
            .iter()
            .zip(bytes)
            .map(|(t, b)| match t.dtype {
                DType::F32 => bytemuck::cast_slice::<u8, f32>(&b)[..t.numel()].to_vec(),
                DType::F16 => b
                    .chunks_exact(2)
                    .take(t.numel())
                    .map(|h| half::f16::from_le_bytes([h[0], h[1]]).to_f32())
                    .collect(),
            })
            .collect())
    }

    /// The tensor converted to `dtype` on the GPU.
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return self.deep_clone();
        }
        let out = Self::uninit(&self.gpu, &self.shape, dtype)?;
        let (entry, src, dst) = match dtype {
            DType::F16 => ("f32_to_f16", "src32", "dst16"),
            DType::F32 => ("f16_to_f32", "src16", "dst32"),
        };
        let kernel = self.gpu.kernel(&shader::CAST, entry, &[])?;
        let words = self.numel().div_ceil(2) as u64;
        let groups = self.gpu.grid_1d(words.div_ceil(256), "cast")?;
        self.gpu.dispatch(
            &kernel,
            &CastParams {
                len: self.numel() as u32,
            },
            &[(src, self.binding("cast")?), (dst, out.binding("cast")?)],
            groups,
        )?;
        Ok(out)
    }
}
