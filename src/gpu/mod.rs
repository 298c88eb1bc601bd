//! The wgpu runtime: adapter choice, device set-up, shaders and pipelines, buffers, command
//! recording, readback, timing and autotuning.
//!
//! A [`Gpu`] owns one device. Ops record their dispatches into the device's open command
//! encoder and nothing is submitted until a result is read back, [`Gpu::flush`] or
//! [`Gpu::sync`] is called, or enough work has piled up to keep the device busy.

mod adapter;
mod autotune;
mod error;
mod pipeline;
mod pool;
mod recorder;
pub mod reflect;
pub mod shader;
pub mod uniform;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use adapter::{AdapterReport, BackendChoice, GpuOptions, Survey, alike, describe, survey};
pub use autotune::{TuneRecord, Tuning, cache_dir};
pub use error::{GpuError, LAVAPIPE_HINT};
pub use pipeline::Kernel;
pub use pool::{PoolStats, PooledBuffer, size_class};
pub use recorder::{Counters, FLUSH_EVERY};

use autotune::Autotuner;
use pipeline::PipelineCache;
use pool::BufferPool;
use recorder::Recorder;

/// The optional features lim uses where the adapter has them, by name.
pub const OPTIONAL_FEATURES: [(wgpu::Features, &str); 4] = [
    (wgpu::Features::SHADER_F16, "SHADER_F16"),
    (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
    (
        wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        "TIMESTAMP_QUERY_INSIDE_ENCODERS",
    ),
    (wgpu::Features::SUBGROUP, "SUBGROUP"),
];

/// The union of [`OPTIONAL_FEATURES`]: what lim requests when the adapter offers it.
pub const WANTED_FEATURES: wgpu::Features = {
    let mut all = wgpu::Features::empty();
    let mut i = 0;
    while i < OPTIONAL_FEATURES.len() {
        all = all.union(OPTIONAL_FEATURES[i].0);
        i += 1;
    }
    all
};

/// Usage of every tensor buffer.
pub const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// The name of one flag in `features`, for messages.
pub fn feature_name(features: wgpu::Features) -> &'static str {
    OPTIONAL_FEATURES
        .into_iter()
        .find(|(flag, _)| features.contains(*flag))
        .map_or("(an optional feature)", |(_, name)| name)
}

/// Wall-clock and, where the adapter has timestamp queries, GPU time of some recorded work.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub wall: Duration,
    pub gpu: Option<Duration>,
}

impl Timing {
    /// GPU time where measured, else wall time.
    pub fn best(&self) -> Duration {
        self.gpu.unwrap_or(self.wall)
    }
}

/// One wgpu device and everything lim keeps for it.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    pipelines: PipelineCache,
    pool: BufferPool,
    recorder: Mutex<Recorder>,
    tuner: Autotuner,
    /// The first uncaptured wgpu error or device loss, reported at the next sync.
    fault: Arc<Mutex<Option<GpuError>>>,
    /// Whether shaders keep wgpu's bounds checks: on a device the caller owns, an
    /// out-of-bounds write of a buggy kernel would land in the caller's buffers.
    bounds_checks: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &describe(&self.info))
            .finish()
    }
}

impl Gpu {
    /// Opens the adapter the options choose, with its own limits and the wanted features it has.
    pub fn new(opts: &GpuOptions) -> Result<Arc<Gpu>, GpuError> {
        let instance = adapter::instance(opts);
        let adapter = adapter::choose(adapter::enumerate(&instance, opts), opts)?;
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(bytes) = opts.max_binding_bytes {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(bytes);
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("lim"),
            required_features: adapter.features() & WANTED_FEATURES,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| GpuError::RequestDevice {
            adapter: describe(&info),
            reason: e.to_string(),
        })?;
        Ok(Self::wrap(
            device,
            queue,
            info,
            opts.tuning.clone(),
            opts.bounds_checks,
        ))
    }

    /// Wraps a device the caller already has (bring your own `wgpu::Device`). lim uses the
    /// features and limits the device was created with, and installs its own device-lost and
    /// uncaptured-error callbacks, whose errors lim's calls return instead of panicking.
    /// Shaders keep wgpu's bounds checks: the device's other buffers are the caller's.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        tuning: Tuning,
    ) -> Arc<Gpu> {
        Self::wrap(device, queue, info, tuning, true)
    }

    fn wrap(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        tuning: Tuning,
        bounds_checks: bool,
    ) -> Arc<Gpu> {
        let fault: Arc<Mutex<Option<GpuError>>> = Arc::default();
        let lost = fault.clone();
        // `Destroyed` also comes when lim drops the device, when nothing reads it any more.
        device.set_device_lost_callback(move |reason, message| {
            lost.lock().unwrap().get_or_insert(GpuError::DeviceLost {
                reason: format!("{reason:?}: {message}"),
            });
        });
        let uncaptured = fault.clone();
        device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| {
            let err = match err {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory {
                    what: "a GPU operation".into(),
                    bytes: None,
                },
                other => GpuError::Validation(other.to_string()),
            };
            uncaptured.lock().unwrap().get_or_insert(err);
        }));
        Arc::new(Gpu {
            limits: device.limits(),
            features: device.features(),
            tuner: Autotuner::new(tuning, &info),
            device,
            queue,
            info,
            pipelines: PipelineCache::default(),
            pool: BufferPool::default(),
            recorder: Mutex::default(),
            fault,
            bounds_checks,
        })
    }

    /// Works on a device the caller keeps using (the embeddable hasher's case): no callbacks
    /// are installed, so the device's own handlers still see its errors, tuning choices
    /// stay in memory, and shaders keep wgpu's bounds checks.
    pub fn sharing(device: &wgpu::Device, queue: &wgpu::Queue) -> Arc<Gpu> {
        let info = device.adapter_info();
        Arc::new(Gpu {
            limits: device.limits(),
            features: device.features(),
            tuner: Autotuner::new(Tuning::Memory, &info),
            device: device.clone(),
            queue: queue.clone(),
            info,
            pipelines: PipelineCache::default(),
            pool: BufferPool::default(),
            recorder: Mutex::default(),
            fault: Arc::default(),
            bounds_checks: true,
        })
    }

    /// Whether shaders keep wgpu's bounds checks: on a device the caller owns
    /// ([`Gpu::from_device`], [`Gpu::sharing`]), or when [`GpuOptions::bounds_checks`] asks.
    pub fn bounds_checks(&self) -> bool {
        self.bounds_checks
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// One line naming the adapter, backend and driver, for every reported figure.
    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Releases the buffers the pool keeps for reuse.
    pub fn trim_pool(&self) {
        self.pool.trim()
    }

    /// Dispatches, submissions and waits so far.
    pub fn counters(&self) -> Counters {
        self.recorder.lock().unwrap().counters
    }

    /// How many distinct pipelines have been compiled.
    pub fn compiled_kernels(&self) -> usize {
        self.pipelines.len()
    }

    /// The error a wgpu callback recorded since the last check, if any.
    fn check(&self) -> Result<(), GpuError> {
        match self.fault.lock().unwrap().take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// What caused `err`, where a callback recorded it (a lost device makes every map fail),
    /// else `err`.
    fn cause_of(&self, err: impl std::fmt::Display) -> GpuError {
        self.fault
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| GpuError::Readback(err.to_string()))
    }

    fn limit_error(
        &self,
        what: &str,
        limit: &'static str,
        requested: u64,
        allowed: u64,
    ) -> GpuError {
        GpuError::LimitExceeded {
            what: what.to_string(),
            limit,
            requested,
            allowed,
            adapter: self.info.name.clone(),
        }
    }

    /// Fails unless the adapter allows a buffer of `bytes` (`max_buffer_size`).
    pub fn check_buffer(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let max = self.limits.max_buffer_size;
        if bytes > max {
            return Err(self.limit_error(what, "max_buffer_size", bytes, max));
        }
        Ok(())
    }

    /// Fails unless a buffer of `bytes` may be bound as one storage binding.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let allowed = self.limits.max_storage_buffer_binding_size;
        if bytes > allowed {
            return Err(self.limit_error(what, "max_storage_buffer_binding_size", bytes, allowed));
        }
        Ok(())
    }

    /// A buffer of at least `bytes` (rounded up to its size class), from the pool when it has one.
    pub fn buffer(
        &self,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &str,
    ) -> Result<PooledBuffer, GpuError> {
        self.check_buffer(what, bytes)?;
        let size = size_class(bytes).min(self.limits.max_buffer_size & !3);
        if let Some(buffer) = self.pool.take(size, usage) {
            return Ok(self.pool.wrap(buffer));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage,
            mapped_at_creation: false,
        });
        if pollster::block_on(scope.pop()).is_some() {
            return Err(GpuError::OutOfMemory {
                what: what.to_string(),
                bytes: Some(size),
            });
        }
        Ok(self.pool.wrap(buffer))
    }

    /// A storage buffer holding `bytes` (padded with zeros to a multiple of 4).
    pub fn upload(&self, bytes: &[u8], what: &str) -> Result<PooledBuffer, GpuError> {
        let padded = (bytes.len() as u64).next_multiple_of(4);
        let buffer = self.buffer(padded, STORAGE, what)?;
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(&buffer, 0, bytes);
        } else {
            let mut data = bytes.to_vec();
            data.resize(padded as usize, 0);
            self.queue.write_buffer(&buffer, 0, &data);
        }
        Ok(buffer)
    }

    /// A workgroup grid for `groups` workgroups in a line, folded into two dimensions when
    /// there are more than one dimension allows. Kernels recover the index as
    /// `wid.y * num_workgroups.x + wid.x` and skip the excess.
    pub fn grid_1d(&self, groups: u64, what: &str) -> Result<[u32; 3], GpuError> {
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        let x = groups.clamp(1, max);
        let y = groups.div_ceil(x).max(1);
        if y > max {
            return Err(self.limit_error(
                what,
                "max_compute_workgroups_per_dimension (squared)",
                groups,
                max * max,
            ));
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Runs `work` (which records GPU work) and measures it: wall time from the first recorded
    /// command to completion, and GPU time from timestamp queries where the adapter has them.
    pub fn time<T, E: From<GpuError>>(
        &self,
        work: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, Timing), E> {
        self.sync()?;
        let queries = self
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("lim timer"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                })
            });
        let start = Instant::now();
        if let Some(q) = &queries {
            self.timestamp(q, 0);
        }
        let out = work()?;
        let resolved = match &queries {
            Some(q) => {
                self.timestamp(q, 1);
                let buffer = self.buffer(
                    16,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    "timestamps",
                )?;
                self.with_encoder(|encoder| encoder.resolve_query_set(q, 0..2, &buffer, 0));
                Some(buffer)
            }
            None => None,
        };
        self.sync()?;
        let wall = start.elapsed();
        let gpu = match resolved {
            Some(buffer) => {
                let bytes = self.read(&[(&buffer, 0, 16)])?.remove(0);
                let ticks: &[u64] = bytemuck::cast_slice(&bytes);
                let ns = ticks[1].saturating_sub(ticks[0]) as f64
                    * self.queue.get_timestamp_period() as f64;
                Some(Duration::from_nanos(ns as u64))
            }
            None => None,
        };
        Ok((out, Timing { wall, gpu }))
    }

    /// Copies the given `(buffer, offset, size)` ranges to the host with one staging buffer,
    /// one submission and one map. Sizes and offsets must be multiples of 4.
    pub fn read(&self, parts: &[(&wgpu::Buffer, u64, u64)]) -> Result<Vec<Vec<u8>>, GpuError> {
        // A zero-sized map is invalid; read at least one word.
        let total = parts.iter().map(|p| p.2).sum::<u64>().max(4);
        let staging = self.buffer(
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "readback",
        )?;
        self.with_encoder(|encoder| {
            let mut at = 0;
            for &(buffer, offset, size) in parts {
                if size > 0 {
                    encoder.copy_buffer_to_buffer(buffer, offset, &staging, at, size);
                }
                at += size;
            }
        });
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..total, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| self.cause_of(e))?
            .map_err(|e| self.cause_of(e))?;
        let out = {
            let view = staging
                .get_mapped_range(0..total)
                .map_err(|e| self.cause_of(e))?;
            let mut at = 0usize;
            parts
                .iter()
                .map(|p| {
                    let part = view[at..at + p.2 as usize].to_vec();
                    at += p.2 as usize;
                    part
                })
                .collect()
        };
        staging.unmap();
        Ok(out)
    }

    /// Submits recorded work and waits for the device to finish it.
    pub fn sync(&self) -> Result<(), GpuError> {
        self.flush();
        self.wait()
    }

    fn wait(&self) -> Result<(), GpuError> {
        self.recorder.lock().unwrap().counters.waits += 1;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::DeviceLost {
                reason: e.to_string(),
            })?;
        self.check()
    }
}
