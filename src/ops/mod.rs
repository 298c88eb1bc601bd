//! Tensor ops, one file per kernel family: the GPU forward that dispatches `shaders/<family>`,
//! and a plain-Rust CPU reference in f64 that the tests compare it with.

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

/// Power-of-two bucket of a dimension, for autotuning keys.
pub(crate) fn size_bucket(n: usize) -> usize {
    n.max(1).next_power_of_two()
}
