//! Recording: every dispatch and copy goes into the device's one open command encoder
//! (dispatches share one compute pass), submitted in one go by `flush`.

use super::uniform::Uniform;
use super::{Gpu, GpuError, Kernel, PooledBuffer};

/// Submit after this many dispatches even if nobody asks, so the device starts on a training
/// step while the host records the rest of it. A ResNet-18 step is about 400 to 700
/// dispatches, so 6 to 11 submissions; on lavapipe it takes the same time as in one.
pub const FLUSH_EVERY: usize = 64;

/// What lim has asked of the device so far. The cost of some work in round trips is the
/// difference of the snapshots before and after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dispatches: u64,
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Times the host waited for the device (readbacks and syncs).
    pub waits: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;

    fn sub(self, before: Counters) -> Counters {
        Counters {
            dispatches: self.dispatches - before.dispatches,
            submissions: self.submissions - before.submissions,
            waits: self.waits - before.waits,
        }
    }
}

#[derive(Default)]
pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Dispatches since the last submission.
    pending: usize,
    /// Parameter buffers of recorded dispatches, released after submission.
    keep: Vec<PooledBuffer>,
    pub(crate) counters: Counters,
}

impl Recorder {
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder
            .get_or_insert_with(|| device.create_command_encoder(&Default::default()))
    }
}

impl Gpu {
    /// Records commands outside a compute pass (copies, clears, query resolves).
    pub fn with_encoder<R>(&self, record: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut rec = self.recorder.lock().unwrap();
        self.pool.set_pending();
        record(rec.encoder(&self.device))
    }

    /// Records one dispatch of `kernel`: `params` is bound as a uniform at binding 0, at its
    /// exact size (so a shader expecting a longer struct fails validation instead of reading
    /// stale bytes), each buffer at the binding of the WGSL variable it is named after. Every
    /// other binding the entry point uses must be named, once.
    pub fn dispatch<P: Uniform>(
        &self,
        kernel: &Kernel,
        params: &P,
        buffers: &[(&str, wgpu::BufferBinding<'_>)],
        groups: [u32; 3],
    ) -> Result<(), GpuError> {
        let buffers = bind_by_name(kernel, buffers)?;
        if !P::SHADERS.iter().any(|s| s.name == kernel.shader) {
            return Err(GpuError::Validation(format!(
                "{} is dispatched with {}, which is not its shader's uniform",
                kernel.label,
                P::NAME
            )));
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if let Some(&g) = groups.iter().find(|&&g| g > max) {
            return Err(self.limit_error(
                &kernel.label,
                "max_compute_workgroups_per_dimension",
                g as u64,
                max as u64,
            ));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let params = bytemuck::bytes_of(params);
        let uniform = self.uniform(params)?;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &uniform,
                offset: 0,
                size: wgpu::BufferSize::new(params.len() as u64),
            }),
        }];
        entries.extend(
            buffers
                .iter()
                .map(|(binding, buffer)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: wgpu::BindingResource::Buffer(buffer.clone()),
                }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.label),
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut rec = self.recorder.lock().unwrap();
        self.pool.set_pending();
        if rec.pass.is_none() {
            let pass = rec
                .encoder(&self.device)
                .begin_compute_pass(&Default::default())
                .forget_lifetime();
            rec.pass = Some(pass);
        }
        let pass = rec.pass.as_mut().expect("opened above");
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        rec.keep.push(uniform);
        rec.pending += 1;
        rec.counters.dispatches += 1;
        if rec.pending >= FLUSH_EVERY {
            self.submit(&mut rec);
        }
        Ok(())
    }

    /// Submits everything recorded so far, without waiting for it.
    pub fn flush(&self) {
        let mut rec = self.recorder.lock().unwrap();
        self.submit(&mut rec);
    }

    /// Submits under the recorder's lock, so submissions keep the order work was recorded in.
    fn submit(&self, rec: &mut Recorder) {
        rec.pass = None;
        rec.pending = 0;
        if let Some(encoder) = rec.encoder.take() {
            self.queue.submit([encoder.finish()]);
            rec.counters.submissions += 1;
        }
        self.pool.submitted();
        rec.keep.clear();
    }

    fn uniform(&self, params: &[u8]) -> Result<PooledBuffer, GpuError> {
        let len = (params.len() as u64).next_multiple_of(16).max(16);
        let buffer = self.buffer(
            len,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            "kernel parameters",
        )?;
        let mut bytes = params.to_vec();
        bytes.resize(len as usize, 0);
        self.queue.write_buffer(&buffer, 0, &bytes);
        Ok(buffer)
    }

    /// Records a timestamp write (into `queries` at `index`) between the surrounding commands.
    pub(crate) fn timestamp(&self, queries: &wgpu::QuerySet, index: u32) {
        self.with_encoder(|encoder| {
            // An empty pass carries the timestamp, which needs only TIMESTAMP_QUERY.
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timestamp"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: queries,
                    beginning_of_pass_write_index: Some(index),
                    end_of_pass_write_index: None,
                }),
            });
        });
    }
}

/// The binding numbers of `buffers`, named after the WGSL variables of `kernel`'s entry point:
/// an error names an unknown, repeated or missing name.
fn bind_by_name<'a>(
    kernel: &Kernel,
    buffers: &[(&str, wgpu::BufferBinding<'a>)],
) -> Result<Vec<(u32, wgpu::BufferBinding<'a>)>, GpuError> {
    let wanted: Vec<&(u32, String)> = kernel.bindings.iter().filter(|(b, _)| *b != 0).collect();
    let names = || {
        wanted
            .iter()
            .map(|(b, n)| format!("{n} ({b})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::with_capacity(buffers.len());
    for (name, buffer) in buffers {
        let Some((binding, _)) = wanted.iter().find(|(_, n)| n == name) else {
            return Err(GpuError::Validation(format!(
                "{} has no buffer binding `{name}`; its entry point binds {}",
                kernel.label,
                names()
            )));
        };
        if out.iter().any(|(b, _)| b == binding) {
            return Err(GpuError::Validation(format!(
                "{}: `{name}` is bound twice",
                kernel.label
            )));
        }
        out.push((*binding, buffer.clone()));
    }
    if let Some((_, missing)) = wanted.iter().find(|(b, _)| out.iter().all(|(o, _)| o != b)) {
        return Err(GpuError::Validation(format!(
            "{}: `{missing}` is not bound; its entry point binds {}",
            kernel.label,
            names()
        )));
    }
    Ok(out)
}
