//! lim's batched perceptual hasher inside a wgpu program that has its own device: hash the
//! layers of a texture you rendered, or images in host memory, and compare the hashes.
//! Run with `cargo run --release --example embed_hasher`.

use lim::hash::{Hash, HashKind, Hasher, Luma8};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;
    println!("on {}", adapter.get_info().name);

    // Three 128x128 "slices": rings, the same rings with faint noise, and a diagonal ramp.
    let (w, h) = (128u32, 128u32);
    let ring = |x: u32, y: u32| ((x as f32 - 64.0).hypot(y as f32 - 60.0) * 6.0) as u8;
    let noise = |x: u32, y: u32| (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) as u8 % 5;
    let layers: [Vec<u8>; 3] = [
        (0..w * h).map(|i| ring(i % w, i / w)).collect(),
        (0..w * h)
            .map(|i| ring(i % w, i / w).saturating_add(noise(i % w, i / w)))
            .collect(),
        (0..w * h)
            .map(|i| ((i % w + i / w) as u8).wrapping_mul(3))
            .collect(),
    ];

    // Your texture: one image per array layer, R8Unorm, with COPY_SRC.
    let size = wgpu::Extent3d {
        width: w,
        height: h,
        depth_or_array_layers: 3,
    };
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("slices"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R8Unorm,
        usage: wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let layout = wgpu::TexelCopyBufferLayout {
        offset: 0,
        bytes_per_row: Some(w),
        rows_per_image: Some(h),
    };
    queue.write_texture(texture.as_image_copy(), &layers.concat(), layout, size);

    // The hasher borrows your device and queue; it keeps no global state.
    let hasher = Hasher::new(&device, &queue, HashKind::DHASH)?;
    let on_gpu = hasher.hash_texture(&texture)?;
    let host: Vec<Luma8> = layers
        .iter()
        .map(|pixels| Luma8 {
            width: w as usize,
            height: h as usize,
            pixels: pixels.clone(),
        })
        .collect();
    let from_host = hasher.hash_images(&host.iter().collect::<Vec<_>>())?;
    assert_eq!(on_gpu, from_host, "texture and host images hash alike");

    for (name, hash) in ["rings", "rings + noise", "ramp"].iter().zip(&on_gpu) {
        println!("{name:>14}  {hash}");
    }
    // Hex round-trips, as imagehash.hex_to_hash does; the paper drops slices within 6 bits.
    let rings: Hash = on_gpu[0].to_string().parse()?;
    for (name, other) in [("rings + noise", &on_gpu[1]), ("ramp", &on_gpu[2])] {
        let d = rings.hamming(other);
        println!(
            "rings vs {name}: {d} bits -> {}",
            if d <= 6 { "drop" } else { "keep" }
        );
    }
    Ok(())
}
