//! Tensor ops, one file per kernel family: the GPU forward that dispatches `shaders/<family>`,
//! and a plain-Rust CPU reference in f64 that the tests compare it with.

pub mod amp;
pub mod batchnorm;
pub mod broadcast;
pub mod conv2d;
pub mod elementwise;
pub mod matmul;
pub mod pool;
pub mod reduce;
pub mod rows;

use crate::error::Result;
use crate::gpu::Gpu;

/// Calls `run(first, len)` for consecutive ranges of `numel` elements of `elem_bytes` each,
/// every range small enough to be bound as one storage binding and starting at an offset
/// the adapter can bind at.
pub(crate) fn for_each_chunk(
    gpu: &Gpu,
    numel: usize,
    elem_bytes: usize,
    mut run: impl FnMut(u64, u64) -> Result<()>,
) -> Result<()> {
    let limits = gpu.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let max_bytes = limits.max_storage_buffer_binding_size / align * align;
    let chunk = max_bytes / elem_bytes as u64;
    let numel = numel as u64;
    let mut first = 0;
    loop {
        let len = chunk.min(numel - first);
        run(first, len)?;
        first += len;
        if first >= numel {
            return Ok(());
        }
    }
}

/// `count` consecutive units (images, planes) of tensors that may be too large to bind whole,
/// as one binding window per tensor: each window starts at an offset the adapter can bind
/// at, and `base[t]` is the element of tensor t's window where the first unit begins.
pub(crate) struct Window {
    pub count: usize,
    pub base: Vec<u32>,
    ranges: Vec<(u64, u64)>,
}

impl Window {
    /// Tensor `t`'s window in `buffer`.
    pub fn binding<'a>(&self, t: usize, buffer: &'a wgpu::Buffer) -> wgpu::BufferBinding<'a> {
        let (offset, size) = self.ranges[t];
        wgpu::BufferBinding {
            buffer,
            offset,
            size: wgpu::BufferSize::new(size.max(4)),
        }
    }
}

/// Splits `units` units into windows over tensors of 4-byte elements, tensor t holding
/// `unit_elems[t]` elements per unit: one window when every tensor fits one binding, else as
/// many units per window as the widest tensor allows.
pub(crate) fn windows(
    gpu: &Gpu,
    what: &str,
    units: usize,
    unit_elems: &[usize],
) -> Result<Vec<Window>> {
    let limits = gpu.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let max = limits.max_storage_buffer_binding_size;
    let unit_bytes: Vec<u64> = unit_elems.iter().map(|&e| e as u64 * 4).collect();
    let widest = unit_bytes.iter().copied().max().unwrap_or(0).max(4);
    let per_window = if widest * units as u64 <= max {
        units.max(1)
    } else {
        // A window may start up to `align - 4` bytes before its first unit.
        gpu.check_binding(what, widest + align)?;
        ((max - align) / widest) as usize
    };
    let mut out = Vec::new();
    let mut first = 0;
    loop {
        let count = per_window.min(units - first);
        let mut base = Vec::new();
        let mut ranges = Vec::new();
        for &bytes in &unit_bytes {
            let start = first as u64 * bytes;
            let offset = start / align * align;
            base.push(((start - offset) / 4) as u32);
            ranges.push((offset, start - offset + count as u64 * bytes));
        }
        out.push(Window {
            count,
            base,
            ranges,
        });
        first += count;
        if first >= units {
            return Ok(out);
        }
    }
}

/// `[gpu_style, software_style]`, reversed on a CPU adapter: the order of two variants, one
/// per element for GPUs and one per row for software adapters, with the adapter's favourite
/// first (its default when tuning is off).
pub(crate) fn favoured_first<V>(gpu: &Gpu, gpu_style: V, software_style: V) -> [V; 2] {
    match gpu.info().device_type {
        wgpu::DeviceType::Cpu => [software_style, gpu_style],
        _ => [gpu_style, software_style],
    }
}

/// Power-of-two bucket of a dimension, for autotuning keys.
pub(crate) fn size_bucket(n: usize) -> usize {
    n.max(1).next_power_of_two()
}
