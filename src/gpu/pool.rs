//! Buffers reused by size class, so that steady-state work (a training step, a batch of
//! hashes) allocates nothing.
//!
//! A buffer dropped while the recorder holds unsubmitted work may still be read by that work;
//! an upload into it through `Queue::write_buffer` would land before that work runs. Such
//! buffers wait in `retired` until the work is submitted, after which queue order makes them
//! safe to reuse.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Buffers the pool keeps for reuse, in bytes, before it starts freeing released ones.
const MAX_CACHED_BYTES: u64 = 1 << 30;

/// The allocation size for a request: at least 256 bytes, and within 25 % above it (eight
/// classes per power of two, four of them in use).
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let step = bytes.next_power_of_two() / 8;
    bytes.div_ceil(step) * step
}

type Class = (u64, wgpu::BufferUsages);

#[derive(Default)]
struct PoolState {
    free: HashMap<Class, Vec<wgpu::Buffer>>,
    cached_bytes: u64,
    /// Whether the recorder holds unsubmitted work.
    pending: bool,
    retired: Vec<wgpu::Buffer>,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    state: Arc<Mutex<PoolState>>,
}

/// Statistics for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub cached_buffers: usize,
    pub cached_bytes: u64,
}

impl BufferPool {
    /// A cached buffer of the class, if there is one.
    pub(crate) fn take(&self, class_bytes: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let mut state = self.state.lock().unwrap();
        let buffer = state.free.get_mut(&(class_bytes, usage))?.pop()?;
        state.cached_bytes -= buffer.size();
        Some(buffer)
    }

    pub(crate) fn wrap(&self, buffer: wgpu::Buffer) -> PooledBuffer {
        PooledBuffer {
            buffer: Some(buffer),
            pool: self.state.clone(),
        }
    }

    pub(crate) fn set_pending(&self) {
        self.state.lock().unwrap().pending = true;
    }

    /// The recorder submitted its work: retired buffers may be reused now.
    pub(crate) fn submitted(&self) {
        let mut state = self.state.lock().unwrap();
        state.pending = false;
        for buffer in std::mem::take(&mut state.retired) {
            state.cache(buffer);
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let state = self.state.lock().unwrap();
        PoolStats {
            cached_buffers: state.free.values().map(Vec::len).sum(),
            cached_bytes: state.cached_bytes,
        }
    }

    /// Frees every cached buffer (wgpu releases each once the GPU is done with it).
    pub(crate) fn trim(&self) {
        let mut state = self.state.lock().unwrap();
        state.free.clear();
        state.cached_bytes = 0;
    }
}

impl PoolState {
    fn cache(&mut self, buffer: wgpu::Buffer) {
        if self.cached_bytes + buffer.size() > MAX_CACHED_BYTES {
            return; // dropping it frees it once the GPU is done with it
        }
        self.cached_bytes += buffer.size();
        self.free
            .entry((buffer.size(), buffer.usage()))
            .or_default()
            .push(buffer);
    }
}

/// A buffer that goes back to its pool when dropped.
#[derive(Debug)]
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Arc<Mutex<PoolState>>,
}

impl Deref for PooledBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        let mut state = self.pool.lock().unwrap();
        if state.pending {
            state.retired.push(buffer);
        } else {
            state.cache(buffer);
        }
    }
}

impl std::fmt::Debug for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolState")
            .field("cached_bytes", &self.cached_bytes)
            .field("pending", &self.pending)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 5120);
        for bytes in (1..200_000u64).step_by(97) {
            let class = size_class(bytes);
            assert!(class >= bytes && class >= 256, "{bytes} -> {class}");
            assert!(bytes <= 256 || class * 4 <= bytes * 5, "{bytes} -> {class}");
            assert_eq!(size_class(class), class, "classes are fixed points");
        }
    }
}
