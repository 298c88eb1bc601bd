//! Using lim's kernels inside a wgpu program that already has its device: wrap the device
//! in a `Gpu`, then work with tensors. Run with `cargo run --release --example own_device`.

use lim::gpu::Tuning;
use lim::{Gpu, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Your program's own set-up; lim uses whatever features and limits you asked for.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: adapter.features() & lim::gpu::WANTED_FEATURES,
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;

    let gpu = Gpu::from_device(device, queue, adapter.get_info(), Tuning::Memory);
    println!("on {}", gpu.describe());

    // y = relu(x · w) + b, recorded into one command encoder and submitted at the readback.
    let x = Tensor::from_slice(&gpu, &[2, 3], &[1.0, 2.0, 3.0, -1.0, -2.0, -3.0])?;
    let w = Tensor::from_slice(&gpu, &[3, 2], &[0.5, -1.0, 0.25, 0.0, 1.0, 1.0])?;
    let b = Tensor::from_slice(&gpu, &[2, 2], &[0.1; 4])?;
    let y = x.matmul(&w)?.relu()?.add(&b)?;
    println!("y = {:?} (shape {:?})", y.to_vec()?, y.shape());
    println!("column sums = {:?}", y.sum(0)?.to_vec()?);

    // The buffers are yours to bind in your own passes, too.
    println!("y lives in a {}-byte wgpu buffer", y.buffer().size());
    Ok(())
}
