//! The batched GPU hasher: Pillow's LANCZOS resize in exact integer arithmetic on the GPU
//! (`shaders/hash.wgsl`), pHash's DCT in f32 there too; the bits are set on the host, and a
//! pHash coefficient too close to the median for f32 to decide is decided in f64. Hashes equal
//! the CPU path's, and imagehash's, bit for bit.
//!
//! Embeddable: [`Hasher::new`] takes the caller's `wgpu::Device` and `Queue` and keeps no
//! global state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::pillow::{Coefficients, Luma8, PRECISION_BITS};
use super::{
    Algorithm, Hash, HashError, HashKind, bits_of, dct_low, dct_matrix, median, phash_bits,
};
use crate::gpu::{Gpu, GpuError, GpuOptions, PooledBuffer, STORAGE, Tuning, shader};
use crate::uniform;

/// An image in a caller's GPU buffer: 8-bit grey, `offset` and `stride` in bytes, both
/// multiples of 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferImage {
    pub offset: u64,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

uniform! {
    pub(crate) struct Params for [shader::HASH] {
        count: u32,
        out_w: u32,
        out_h: u32,
        row0: u32,
        rows: u32,
        words: u32,
        v_taps: u32,
        n: u32,
    }
}

/// Weights for one input size, on the GPU.
struct Plan {
    row0: usize,
    rows: usize,
    words: usize,
    v_taps: usize,
    h_words: PooledBuffer,
    h_weights: PooledBuffer,
    v_bounds: PooledBuffer,
    v_weights: PooledBuffer,
}

/// Hashes batches of images on a wgpu device.
pub struct Hasher {
    gpu: Arc<Gpu>,
    kind: HashKind,
    plans: Mutex<HashMap<(usize, usize, usize), Arc<Plan>>>,
    cosines: Option<PooledBuffer>,
}

/// Images per dispatch: a bound on the scratch buffers.
const BATCH: usize = 128;

/// Pillow's coefficients, or the identity where the size does not change (Pillow then skips
/// that pass).
fn coefficients(input: usize, output: usize) -> Coefficients {
    if input == output {
        return Coefficients {
            taps: 1,
            bounds: (0..input).map(|x| (x, 1)).collect(),
            weights: vec![1 << PRECISION_BITS; input],
        };
    }
    Coefficients::new(input, output)
}

impl Hasher {
    /// A hasher on the caller's device. Errors go to the device's own error handlers.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        kind: HashKind,
    ) -> Result<Hasher, HashError> {
        Self::with_gpu(Gpu::sharing(device, queue), kind)
    }

    /// A hasher on its own device, chosen by `opts`.
    pub fn from_options(opts: &GpuOptions, kind: HashKind) -> Result<Hasher, HashError> {
        let opts = GpuOptions {
            tuning: Tuning::Memory,
            ..opts.clone()
        };
        Self::with_gpu(Gpu::new(&opts)?, kind)
    }

    /// A hasher on a lim device.
    pub fn with_gpu(gpu: Arc<Gpu>, kind: HashKind) -> Result<Hasher, HashError> {
        let cosines = match kind.algorithm {
            Algorithm::Phash => {
                let c: Vec<f32> = dct_matrix(4 * kind.size, kind.size)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                Some(gpu.upload(bytemuck::cast_slice(&c), "dct cosines")?)
            }
            _ => None,
        };
        Ok(Hasher {
            gpu,
            kind,
            plans: Mutex::default(),
            cosines,
        })
    }

    pub fn kind(&self) -> HashKind {
        self.kind
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Hashes images from host memory.
    pub fn hash_images(&self, images: &[&Luma8]) -> Result<Vec<Hash>, HashError> {
        let mut out = vec![None; images.len()];
        // One dispatch per image size (and per BATCH images).
        let mut by_size: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        for (i, image) in images.iter().enumerate() {
            by_size
                .entry((image.width, image.height))
                .or_default()
                .push(i);
        }
        for ((width, height), indices) in by_size {
            let stride = width.next_multiple_of(4);
            for chunk in indices.chunks(BATCH) {
                let mut bytes = vec![0u8; chunk.len() * stride * height];
                for (n, &i) in chunk.iter().enumerate() {
                    for y in 0..height {
                        let row = &images[i].pixels[y * width..(y + 1) * width];
                        bytes[(n * height + y) * stride..][..width].copy_from_slice(row);
                    }
                }
                let buffer = self.gpu.upload(&bytes, "images to hash")?;
                let layout: Vec<BufferImage> = (0..chunk.len())
                    .map(|n| BufferImage {
                        offset: (n * stride * height) as u64,
                        width,
                        height,
                        stride,
                    })
                    .collect();
                for (&i, hash) in chunk.iter().zip(self.hash_same_size(&buffer, &layout)?) {
                    out[i] = Some(hash);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|h| h.expect("every image hashed"))
            .collect())
    }

    /// Hashes images already in a GPU buffer (with `STORAGE` usage).
    pub fn hash_buffer(
        &self,
        buffer: &wgpu::Buffer,
        images: &[BufferImage],
    ) -> Result<Vec<Hash>, HashError> {
        if let Some(bad) = images
            .iter()
            .find(|i| i.offset % 4 != 0 || i.stride % 4 != 0 || i.stride < i.width)
        {
            return Err(HashError::Kind(format!(
                "{bad:?}: offset and stride must be multiples of 4, stride at least the width"
            )));
        }
        let mut out = vec![None; images.len()];
        let mut by_size: HashMap<(usize, usize, usize), Vec<usize>> = HashMap::new();
        for (i, image) in images.iter().enumerate() {
            by_size
                .entry((image.width, image.height, image.stride))
                .or_default()
                .push(i);
        }
        for indices in by_size.into_values() {
            for chunk in indices.chunks(BATCH) {
                let layout: Vec<BufferImage> = chunk.iter().map(|&i| images[i]).collect();
                for (&i, hash) in chunk.iter().zip(self.hash_same_size(buffer, &layout)?) {
                    out[i] = Some(hash);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|h| h.expect("every image hashed"))
            .collect())
    }

    /// Hashes the layers of a 2-D `R8Unorm` or `R8Uint` texture (with `COPY_SRC` usage), one
    /// image per array layer. The texture is copied to a buffer on the GPU first.
    pub fn hash_texture(&self, texture: &wgpu::Texture) -> Result<Vec<Hash>, HashError> {
        if !matches!(
            texture.format(),
            wgpu::TextureFormat::R8Unorm | wgpu::TextureFormat::R8Uint
        ) {
            return Err(HashError::Kind(format!(
                "texture format {:?}: the hasher reads R8Unorm or R8Uint",
                texture.format()
            )));
        }
        let (width, height, layers) = (
            texture.width() as usize,
            texture.height() as usize,
            texture.depth_or_array_layers() as usize,
        );
        let stride = width.next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize);
        let buffer = self.gpu.buffer(
            (stride * height * layers) as u64,
            STORAGE,
            "texture to hash",
        )?;
        self.gpu.with_encoder(|e| {
            e.copy_texture_to_buffer(
                texture.as_image_copy(),
                wgpu::TexelCopyBufferInfo {
                    buffer: &buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(stride as u32),
                        rows_per_image: Some(height as u32),
                    },
                },
                texture.size(),
            )
        });
        let images: Vec<BufferImage> = (0..layers)
            .map(|l| BufferImage {
                offset: (l * stride * height) as u64,
                width,
                height,
                stride,
            })
            .collect();
        self.hash_buffer(&buffer, &images)
    }

    /// The weights for one input size, uploaded once.
    fn plan(&self, width: usize, height: usize, stride: usize) -> Result<Arc<Plan>, GpuError> {
        let key = (width, height, stride);
        if let Some(plan) = self.plans.lock().unwrap().get(&key) {
            return Ok(plan.clone());
        }
        let (out_w, out_h) = self.kind.resized();
        let h = coefficients(width, out_w);
        let v = coefficients(height, out_h);
        let (row0, row_end) = v.span();
        // Horizontal weights per output column and per word of a row, zero outside the window.
        let words = stride / 4;
        let mut h_words = Vec::with_capacity(out_w);
        let mut h_weights = vec![[0i32; 4]; out_w * words];
        for (x, &(xmin, len)) in h.bounds.iter().enumerate() {
            let (first, end) = (xmin / 4, (xmin + len).div_ceil(4));
            h_words.push([first as u32, (end - first) as u32]);
            for t in 0..len {
                h_weights[x * words + (xmin + t) / 4][(xmin + t) % 4] = h.weights[x * h.taps + t];
            }
        }
        let v_bounds: Vec<[u32; 2]> = v
            .bounds
            .iter()
            .map(|&(m, l)| [m as u32, l as u32])
            .collect();
        let upload = |bytes: &[u8], what| self.gpu.upload(bytes, what);
        let plan = Arc::new(Plan {
            row0,
            rows: row_end - row0,
            words,
            v_taps: v.taps,
            h_words: upload(bytemuck::cast_slice(&h_words), "resize windows")?,
            h_weights: upload(bytemuck::cast_slice(&h_weights), "resize weights")?,
            v_bounds: upload(bytemuck::cast_slice(&v_bounds), "resize windows")?,
            v_weights: upload(bytemuck::cast_slice(&v.weights), "resize weights")?,
        });
        self.plans.lock().unwrap().insert(key, plan.clone());
        Ok(plan)
    }

    /// One batch of images of one size.
    fn hash_same_size(
        &self,
        pixels: &wgpu::Buffer,
        images: &[BufferImage],
    ) -> Result<Vec<Hash>, HashError> {
        let gpu = &self.gpu;
        let first = images[0];
        let plan = self.plan(first.width, first.height, first.stride)?;
        let (out_w, out_h) = self.kind.resized();
        let n = self.kind.size;
        let count = images.len();
        let params = Params {
            count: count as u32,
            out_w: out_w as u32,
            out_h: out_h as u32,
            row0: plan.row0 as u32,
            rows: plan.rows as u32,
            words: plan.words as u32,
            v_taps: plan.v_taps as u32,
            n: n as u32,
        };
        let layouts: Vec<[u32; 2]> = images
            .iter()
            .map(|i| [i.offset as u32, i.stride as u32])
            .collect();
        let layouts = gpu.upload(bytemuck::cast_slice(&layouts), "image layouts")?;
        let mid = gpu.buffer(
            (count * plan.rows * out_w * 4) as u64,
            STORAGE,
            "resize rows",
        )?;
        let small_bytes = (count * out_w * out_h * 4) as u64;
        let small = gpu.buffer(small_bytes, STORAGE, "resized images")?;
        let launch = |entry: &str,
                      bindings: &[(&str, wgpu::BufferBinding<'_>)],
                      invocations: usize|
         -> Result<(), GpuError> {
            let kernel = gpu.kernel(&shader::HASH, entry, &[])?;
            let groups = gpu.grid_1d(invocations.div_ceil(64) as u64, &kernel.label)?;
            gpu.dispatch(&kernel, &params, bindings, groups)
        };
        gpu.check_binding("images to hash", pixels.size())?;
        launch(
            "horizontal",
            &[
                ("pixels", whole(pixels)),
                ("layouts", whole(&layouts)),
                ("h_words", whole(&plan.h_words)),
                ("h_weights", whole(&plan.h_weights)),
                ("mid", whole(&mid)),
            ],
            count * plan.rows * out_w,
        )?;
        launch(
            "vertical",
            &[
                ("mid", whole(&mid)),
                ("v_bounds", whole(&plan.v_bounds)),
                ("v_weights", whole(&plan.v_weights)),
                ("small", whole(&small)),
            ],
            count * out_h * out_w,
        )?;
        let resized_of = |words: &[u32], i: usize| -> Vec<u8> {
            words[i * out_w * out_h..(i + 1) * out_w * out_h]
                .iter()
                .map(|&v| v as u8)
                .collect()
        };
        let Some(cosines) = &self.cosines else {
            let bytes = gpu.read(&[(&small, 0, small_bytes)])?.remove(0);
            let words: &[u32] = bytemuck::cast_slice(&bytes);
            return Ok((0..count)
                .map(|i| bits_of(&resized_of(words, i), self.kind))
                .collect());
        };
        let t = gpu.buffer((count * n * out_w * 4) as u64, STORAGE, "dct rows")?;
        let low_bytes = (count * n * n * 4) as u64;
        let low = gpu.buffer(low_bytes, STORAGE, "dct")?;
        launch(
            "dct_rows",
            &[
                ("small", whole(&small)),
                ("cosines", whole(cosines)),
                ("t", whole(&t)),
            ],
            count * n * out_w,
        )?;
        launch(
            "dct_cols",
            &[
                ("cosines", whole(cosines)),
                ("t", whole(&t)),
                ("low", whole(&low)),
            ],
            count * n * n,
        )?;
        let mut back = gpu.read(&[(&small, 0, small_bytes), (&low, 0, low_bytes)])?;
        let (words, coefficients): (&[u32], &[f32]) = (
            bytemuck::cast_slice(&back[0]),
            bytemuck::cast_slice(&back[1]),
        );
        let hashes = (0..count)
            .map(|i| {
                let resized = resized_of(words, i);
                let low: Vec<f64> = coefficients[i * n * n..(i + 1) * n * n]
                    .iter()
                    .map(|&c| c as f64)
                    .collect();
                decide_phash(&resized, &low, out_w, n)
            })
            .collect();
        back.clear();
        Ok(hashes)
    }
}

fn whole(buffer: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
    buffer.as_entire_buffer_binding()
}

/// pHash's bits from f32 coefficients where they are safe: each differs from the true value
/// by at most `err` (two chained sums of `size` terms, each within `size` ulps of the sum of
/// absolute terms), so the median does too; a coefficient more than `2 err` from the f32
/// median falls on the same side of the true one. Otherwise the f64 path decides.
fn decide_phash(resized: &[u8], low: &[f64], size: usize, n: usize) -> Hash {
    let total: f64 = resized.iter().map(|&p| p as f64).sum();
    // |C| <= 2 in each direction; f32's unit roundoff is 2^-24; two passes of `size` terms.
    let err = 4.0 * total * (2 * size + 2) as f64 * f32::EPSILON as f64 / 2.0;
    let med = median(low);
    if low.iter().all(|&c| (c - med).abs() > 2.0 * err) {
        return phash_bits(low, med);
    }
    let exact = dct_low(resized, size, n);
    phash_bits(&exact, median(&exact))
}
