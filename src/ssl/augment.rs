//! SwAV's multi-crop augmentation, as the paper's `MultiCropDataset`: per slice, crops of a
//! few sizes, each a torchvision `RandomResizedCrop`, `ColorJitter` (brightness and
//! contrast, in random order) with some probability, a Gaussian blur with some probability,
//! and `Normalize`. The random draws happen on the host from a seeded generator
//! ([`MultiCrop::sample`]); the pixels are computed on the GPU ([`MultiCrop::apply`],
//! `shaders/augment.wgsl`).
//!
//! On grey slices the paper's saturation and hue jitter and its `RandomGrayscale` change
//! nothing (every channel is equal), so they are not drawn. Unlike Pillow, values stay
//! floating-point between the transforms instead of being rounded to 8 bits after each, the
//! blur is an exact Gaussian rather than Pillow's three box blurs, and contrast blends with
//! the exact mean rather than Pillow's mean rounded to an integer grey level.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::data::GreyImage;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, shader};
use crate::tensor::{DType, Tensor};
use crate::uniform;

/// Crops of one output size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CropGroup {
    /// Output side in pixels.
    pub size: usize,
    /// Crops per slice.
    pub count: usize,
    /// The fraction of the slice's area a crop covers, drawn uniformly from this range.
    pub scale: (f32, f32),
}

/// The whole augmentation; [`MultiCrop::paper`] is the paper's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiCrop {
    pub groups: Vec<CropGroup>,
    /// The crop's aspect ratio range, drawn log-uniformly (3/4 to 4/3).
    pub ratio: (f32, f32),
    /// The probability of the colour jitter (0.8), and its brightness and contrast
    /// strengths (0.4: factors from 0.6 to 1.4).
    pub jitter_probability: f32,
    pub brightness: f32,
    pub contrast: f32,
    /// The probability of the blur (0.5) and its standard deviation range ([0.1, 2] px).
    pub blur_probability: f32,
    pub blur_sigma: (f32, f32),
    /// `Normalize`'s mean and standard deviation, for every channel.
    pub mean: f32,
    pub std: f32,
    /// Channels of the output: 3 (the grey value replicated, for torchvision's ResNets) or 1.
    pub channels: usize,
}

impl MultiCrop {
    /// The paper's: 2 crops of 224 px from 90-100 % of the slice, 6 of 96 px from 10-33 %,
    /// normalised with the CT statistics 0.1806 / 0.1907, three channels.
    pub fn paper() -> MultiCrop {
        MultiCrop {
            groups: vec![
                CropGroup {
                    size: 224,
                    count: 2,
                    scale: (0.9, 1.0),
                },
                CropGroup {
                    size: 96,
                    count: 6,
                    scale: (0.1, 0.33),
                },
            ],
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            jitter_probability: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            blur_probability: 0.5,
            blur_sigma: (0.1, 2.0),
            mean: 0.1806,
            std: 0.1907,
            channels: 3,
        }
    }

    /// Crops per slice, over all groups.
    pub fn crops(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }

    fn check(&self) -> Result<()> {
        let bad = |why: String| {
            Err(Error::InvalidArgument {
                op: "multi-crop",
                why,
            })
        };
        if self.groups.is_empty() || self.groups.iter().any(|g| g.size == 0 || g.count == 0) {
            return bad(format!(
                "needs crops of positive sizes and counts, got {:?}",
                self.groups
            ));
        }
        let unit = |(lo, hi): (f32, f32)| 0.0 < lo && lo <= hi && hi <= 1.0;
        if let Some(g) = self.groups.iter().find(|g| !unit(g.scale)) {
            return bad(format!(
                "a crop scale is a range within (0, 1], got {:?}",
                g.scale
            ));
        }
        if !(0.0 < self.ratio.0 && self.ratio.0 <= self.ratio.1) {
            return bad(format!("the aspect ratio range {:?} is empty", self.ratio));
        }
        let positive = |v: f32| v > 0.0;
        if !positive(self.std) || ![1, 3].contains(&self.channels) {
            return bad(format!(
                "needs a positive std and 1 or 3 channels, got {} and {}",
                self.std, self.channels
            ));
        }
        let ordered = 0.0 <= self.blur_sigma.0 && self.blur_sigma.0 <= self.blur_sigma.1;
        if !(ordered && self.brightness >= 0.0 && self.contrast >= 0.0) {
            return bad(format!(
                "blur sigma {:?}, brightness {} and contrast {} are out of range",
                self.blur_sigma, self.brightness, self.contrast
            ));
        }
        Ok(())
    }

    /// Draws every crop of a batch of slices of `sizes` (width, height): `views[g][c * B +
    /// b]` is crop c of group g of slice b (crop-major, as SwAV concatenates them). Slice by
    /// slice, crop after crop, in group order, as the paper's dataset draws them.
    pub fn sample(&self, rng: &mut StdRng, sizes: &[(usize, usize)]) -> Vec<Vec<View>> {
        let b = sizes.len();
        let mut views: Vec<Vec<View>> = self
            .groups
            .iter()
            .map(|g| vec![View::default(); g.count * b])
            .collect();
        for (i, &(width, height)) in sizes.iter().enumerate() {
            for (group, out) in self.groups.iter().zip(&mut views) {
                for c in 0..group.count {
                    out[c * b + i] = self.view(rng, width, height, group.scale);
                }
            }
        }
        views
    }

    fn view(&self, rng: &mut StdRng, width: usize, height: usize, scale: (f32, f32)) -> View {
        let [top, left, h, w] = random_resized_crop(rng, width, height, scale, self.ratio);
        let mut view = View {
            top,
            left,
            height: h,
            width: w,
            ..View::default()
        };
        // RandomApply draws `p < rand`; ColorJitter draws its order, then its factors.
        if rng.random_range(0.0..1.0f32) < self.jitter_probability {
            let order: [u8; 4] = {
                let mut o = [0, 1, 2, 3];
                for i in (1..4).rev() {
                    o.swap(i, rng.random_range(0..=i));
                }
                o
            };
            let position = |t: u8| order.iter().position(|&o| o == t);
            view.contrast_first = position(1) < position(0);
            view.brightness = jitter_factor(rng, self.brightness);
            view.contrast = jitter_factor(rng, self.contrast);
        }
        if rng.random_range(0.0..1.0f32) < self.blur_probability {
            view.sigma = rng.random_range(self.blur_sigma.0..=self.blur_sigma.1);
        }
        view
    }

    /// The crops of `images` that `views` (from [`MultiCrop::sample`]) describe: one tensor
    /// per group, `[count * B, channels, size, size]`, crop-major.
    pub fn apply(
        &self,
        gpu: &Arc<Gpu>,
        images: &[GreyImage],
        views: &[Vec<View>],
    ) -> Result<Vec<Tensor>> {
        self.check()?;
        let b = images.len();
        let fits = views.len() == self.groups.len()
            && self
                .groups
                .iter()
                .zip(views)
                .all(|(g, v)| v.len() == g.count * b);
        if b == 0 || !fits {
            return Err(Error::InvalidArgument {
                op: "multi-crop",
                why: format!("needs the views of {b} images (a batch of one or more)"),
            });
        }
        for (g, group) in self.groups.iter().zip(views) {
            for (n, view) in group.iter().enumerate() {
                let image = &images[n % b];
                let inside = view.width > 0
                    && view.height > 0
                    && (view.left + view.width) as usize <= image.width
                    && (view.top + view.height) as usize <= image.height;
                if !inside {
                    return Err(Error::InvalidArgument {
                        op: "multi-crop",
                        why: format!(
                            "crop {view:?} of group {} lies outside its {}x{} image",
                            g.size, image.width, image.height
                        ),
                    });
                }
            }
        }
        let sources = Sources::upload(gpu, images)?;
        self.groups
            .iter()
            .zip(views)
            .map(|(group, views)| self.apply_group(gpu, &sources, group.size, views))
            .collect()
    }

    fn apply_group(
        &self,
        gpu: &Arc<Gpu>,
        sources: &Sources,
        size: usize,
        views: &[View],
    ) -> Result<Tensor> {
        let b = sources.starts.len();
        let rows = views.len();
        let area = size * size;
        let out = Tensor::uninit(gpu, &[rows, self.channels, size, size], DType::F32)?;
        let out_row = (self.channels * area * 4) as u64;
        let waves = plan_waves(gpu, rows, b, out_row, area as u64 * 4, sources)?;
        let widest = waves.iter().map(|w| w.rows.len()).max().unwrap_or(1);
        let a = Tensor::uninit(gpu, &[widest * area], DType::F32)?;
        let tmp = Tensor::uninit(gpu, &[widest * area], DType::F32)?;
        let means = Tensor::uninit(gpu, &[widest], DType::F32)?;
        let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
        let kernel = |entry| gpu.kernel(&shader::AUGMENT, entry, &[]);
        let (resize, mean, blur_rows, blur_columns) = (
            kernel("resize")?,
            kernel("mean")?,
            kernel("blur_rows")?,
            kernel("blur_columns")?,
        );
        for wave in &waves {
            let first = sources.starts[wave.samples.start];
            let crops: Vec<CropParams> = wave
                .rows
                .clone()
                .map(|row| {
                    let (view, sample) = (views[row], row % b);
                    CropParams {
                        src: ((sources.starts[sample] - first) / 2) as u32,
                        src_width: sources.sizes[sample].0 as u32,
                        src_height: sources.sizes[sample].1 as u32,
                        top: view.top,
                        left: view.left,
                        height: view.height,
                        width: view.width,
                        row: (row - wave.rows.start) as u32,
                        brightness: view.brightness,
                        contrast: view.contrast,
                        contrast_first: view.contrast_first as u32,
                        sigma: view.sigma,
                    }
                })
                .collect();
            let crops = gpu.upload(bytemuck::cast_slice(&crops), "augment crops")?;
            let crop_binding = wgpu::BufferBinding {
                buffer: &crops,
                offset: 0,
                size: wgpu::BufferSize::new((wave.rows.len() * size_of::<CropParams>()) as u64),
            };
            let last = sources.ends[wave.samples.end - 1];
            let src = wgpu::BufferBinding {
                buffer: &sources.buffer,
                offset: first,
                size: wgpu::BufferSize::new((last - first).next_multiple_of(4)),
            };
            let start = wave.rows.start as u64 * out_row;
            let offset = start / align * align;
            let out_binding =
                out.binding_range(offset, start - offset + wave.rows.len() as u64 * out_row);
            let params = Params {
                size: size as u32,
                crops: wave.rows.len() as u32,
                channels: self.channels as u32,
                out_base: ((start - offset) / 4) as u32,
                mean: self.mean,
                deviation: self.std,
            };
            let grid = [area.div_ceil(64) as u32, wave.rows.len() as u32, 1];
            gpu.dispatch(
                &resize,
                &params,
                &[
                    ("src", src),
                    ("crops", crop_binding.clone()),
                    ("a", a.binding("augment crops")?),
                ],
                grid,
            )?;
            gpu.dispatch(
                &mean,
                &params,
                &[
                    ("crops", crop_binding.clone()),
                    ("a", a.binding("augment crops")?),
                    ("means", means.binding("augment means")?),
                ],
                [wave.rows.len() as u32, 1, 1],
            )?;
            gpu.dispatch(
                &blur_rows,
                &params,
                &[
                    ("crops", crop_binding.clone()),
                    ("a", a.binding("augment crops")?),
                    ("means", means.binding("augment means")?),
                    ("tmp", tmp.binding("augment blur")?),
                ],
                grid,
            )?;
            gpu.dispatch(
                &blur_columns,
                &params,
                &[
                    ("crops", crop_binding),
                    ("tmp", tmp.binding("augment blur")?),
                    ("out", out_binding),
                ],
                grid,
            )?;
        }
        Ok(out)
    }
}

impl MultiCrop {
    /// A contact sheet of what the network sees: one row per slice (the first `samples` of
    /// the batch), its crops left to right at their own size, de-normalised to grey.
    pub fn contact_sheet(
        &self,
        crops: &[Tensor],
        batch: usize,
        samples: usize,
    ) -> Result<image::GrayImage> {
        const GAP: usize = 4;
        let rows = samples.min(batch);
        let tallest = self.groups.iter().map(|g| g.size).max().unwrap_or(0);
        let wide: usize = self.groups.iter().map(|g| g.count * (g.size + GAP)).sum();
        let mut sheet = image::GrayImage::from_pixel(
            (wide + GAP) as u32,
            (rows * (tallest + GAP) + GAP) as u32,
            image::Luma([48]),
        );
        let values = Tensor::to_vecs(&crops.iter().collect::<Vec<_>>())?;
        for b in 0..rows {
            let mut x0 = GAP;
            let y0 = GAP + b * (tallest + GAP);
            for (group, values) in self.groups.iter().zip(&values) {
                let s = group.size;
                for c in 0..group.count {
                    let first = (c * batch + b) * self.channels * s * s;
                    for (i, v) in values[first..first + s * s].iter().enumerate() {
                        let grey = ((v * self.std + self.mean).clamp(0.0, 1.0) * 255.0).round();
                        sheet.put_pixel(
                            (x0 + i % s) as u32,
                            (y0 + i / s) as u32,
                            image::Luma([grey as u8]),
                        );
                    }
                    x0 += s + GAP;
                }
            }
        }
        Ok(sheet)
    }
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 draws of an area fraction in
/// `scale` and a log-uniform aspect ratio (width / height) in `ratio`, the first whose
/// rounded box fits taken at a uniform position; else the centre crop closest to the ratio.
/// Returns `[top, left, height, width]`.
pub fn random_resized_crop(
    rng: &mut StdRng,
    width: usize,
    height: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
) -> [u32; 4] {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = ((ratio.0 as f64).ln(), (ratio.1 as f64).ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0 as f64, scale.1 as f64);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        // Python's round: halves to even.
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return [top as u32, left as u32, h as u32, w as u32];
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 as f64 {
        (
            width,
            ((width as f64 / ratio.0 as f64).round_ties_even() as usize).max(1),
        )
    } else if in_ratio > ratio.1 as f64 {
        (
            ((height as f64 * ratio.1 as f64).round_ties_even() as usize).max(1),
            height,
        )
    } else {
        (width, height)
    };
    let (h, w) = (h.min(height), w.min(width));
    [
        ((height - h) / 2) as u32,
        ((width - w) / 2) as u32,
        h as u32,
        w as u32,
    ]
}

/// `torch.empty(1).uniform_(lo, hi)`.
fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random_range(0.0..1.0f64)
}

/// ColorJitter's factor for strength s: uniform in [max(0, 1 - s), 1 + s].
fn jitter_factor(rng: &mut StdRng, strength: f32) -> f32 {
    if strength == 0.0 {
        return 1.0;
    }
    rng.random_range((1.0 - strength).max(0.0)..=1.0 + strength)
}

/// What the draws decided for one crop: its box in the slice, the jitter factors (1: none),
/// which of brightness and contrast comes first, and the blur's sigma (0: none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
    pub brightness: f32,
    pub contrast: f32,
    pub contrast_first: bool,
    pub sigma: f32,
}

impl Default for View {
    fn default() -> View {
        View {
            top: 0,
            left: 0,
            height: 0,
            width: 0,
            brightness: 1.0,
            contrast: 1.0,
            contrast_first: false,
            sigma: 0.0,
        }
    }
}

uniform! {
    pub(crate) struct Params for [shader::AUGMENT] {
        size: u32,
        crops: u32,
        channels: u32,
        out_base: u32,
        mean: f32,
        deviation: f32,
    }
}

/// The shader's `Crop`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CropParams {
    src: u32,
    src_width: u32,
    src_height: u32,
    top: u32,
    left: u32,
    height: u32,
    width: u32,
    row: u32,
    brightness: f32,
    contrast: f32,
    contrast_first: u32,
    sigma: f32,
}

/// The batch's images in one buffer, two 16-bit pixels a word, each image starting at an
/// offset the adapter can bind at.
struct Sources {
    buffer: crate::gpu::PooledBuffer,
    /// Byte range of each image.
    starts: Vec<u64>,
    ends: Vec<u64>,
    sizes: Vec<(usize, usize)>,
}

impl Sources {
    fn upload(gpu: &Gpu, images: &[GreyImage]) -> Result<Sources> {
        let align = gpu.limits().min_storage_buffer_offset_alignment as usize;
        let mut packed: Vec<u16> = Vec::new();
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for image in images {
            let start = (packed.len() * 2).next_multiple_of(align);
            packed.resize(start / 2, 0);
            packed.extend_from_slice(&image.pixels);
            starts.push(start as u64);
            ends.push(packed.len() as u64 * 2);
        }
        let buffer = gpu.upload(bytemuck::cast_slice(&packed), "augment sources")?;
        Ok(Sources {
            buffer,
            starts,
            ends,
            sizes: images.iter().map(|i| (i.width, i.height)).collect(),
        })
    }
}

/// Output rows (crops) processed together, and the slices they are cut from.
struct Wave {
    rows: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
}

/// Splits `rows` crop-major output rows into waves whose output rows, work buffers and
/// sources each fit one storage binding: any consecutive rows when every source fits one
/// binding, else rows of one crop index over a range of slices.
fn plan_waves(
    gpu: &Gpu,
    rows: usize,
    b: usize,
    out_row: u64,
    work_row: u64,
    sources: &Sources,
) -> Result<Vec<Wave>> {
    let limits = gpu.limits();
    let max = limits.max_storage_buffer_binding_size;
    let align = limits.min_storage_buffer_offset_alignment as u64;
    // An output window may start up to `align - 4` bytes before its first row.
    let per_wave = (max.saturating_sub(align) / out_row).min(max / work_row) as usize;
    if per_wave == 0 {
        gpu.check_binding("one augmented crop", out_row + align)?;
    }
    let bytes = |s: std::ops::Range<usize>| sources.ends[s.end - 1] - sources.starts[s.start];
    if bytes(0..b) <= max {
        return Ok((0..rows)
            .step_by(per_wave)
            .map(|r| Wave {
                rows: r..(r + per_wave).min(rows),
                samples: 0..b,
            })
            .collect());
    }
    let mut waves = Vec::new();
    for crop in 0..rows / b {
        let mut first = 0;
        while first < b {
            let mut end = first + 1;
            gpu.check_binding("one slice's pixels", bytes(first..end))?;
            while end < b && end - first < per_wave && bytes(first..end + 1) <= max {
                end += 1;
            }
            waves.push(Wave {
                rows: crop * b + first..crop * b + end,
                samples: first..end,
            });
            first = end;
        }
    }
    Ok(waves)
}

/// CPU reference in f64.
pub mod reference {
    use super::View;
    use crate::data::GreyImage;

    fn triangle(t: f64) -> f64 {
        (1.0 - t.abs()).max(0.0)
    }

    /// Pillow's BILINEAR taps and weights along one axis of a box of `len` pixels.
    fn axis(out: usize, size: usize, len: usize) -> Vec<(usize, f64)> {
        let scale = len as f64 / size as f64;
        let support = scale.max(1.0);
        let centre = (out as f64 + 0.5) * scale;
        let first = ((centre - support + 0.5) as i64).max(0) as usize;
        let end = ((centre + support + 0.5) as i64).min(len as i64) as usize;
        let taps: Vec<(usize, f64)> = (first..end)
            .map(|x| (x, triangle((x as f64 - centre + 0.5) / support)))
            .collect();
        let total: f64 = taps.iter().map(|t| t.1).sum();
        taps.into_iter().map(|(x, w)| (x, w / total)).collect()
    }

    fn blur(values: &[f64], size: usize, sigma: f64, along_x: bool) -> Vec<f64> {
        let r = (3.0 * sigma).ceil() as i64;
        let weights: Vec<f64> = (-r..=r)
            .map(|t| match sigma {
                0.0 => 1.0,
                s => (-0.5 * (t as f64 / s).powi(2)).exp(),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut out = vec![0.0; size * size];
        for y in 0..size {
            for x in 0..size {
                let mut acc = 0.0;
                for (t, w) in (-r..=r).zip(&weights) {
                    let (sx, sy) = match along_x {
                        true => ((x as i64 + t).clamp(0, size as i64 - 1) as usize, y),
                        false => (x, (y as i64 + t).clamp(0, size as i64 - 1) as usize),
                    };
                    acc += w * values[sy * size + sx];
                }
                out[y * size + x] = acc / total;
            }
        }
        out
    }

    /// One crop, `[size, size]`, normalised (one channel).
    pub fn crop(image: &GreyImage, view: &View, size: usize, mean: f64, std: f64) -> Vec<f64> {
        let pixel = |y: usize, x: usize| {
            image.pixels[(view.top as usize + y) * image.width + view.left as usize + x] as f64
                / 65535.0
        };
        let mut resized = vec![0.0; size * size];
        for oy in 0..size {
            let ys = axis(oy, size, view.height as usize);
            for ox in 0..size {
                let xs = axis(ox, size, view.width as usize);
                resized[oy * size + ox] = ys
                    .iter()
                    .map(|&(y, wy)| wy * xs.iter().map(|&(x, wx)| wx * pixel(y, x)).sum::<f64>())
                    .sum();
            }
        }
        let (b, c) = (view.brightness as f64, view.contrast as f64);
        let brighten = |v: f64| if b == 1.0 { v } else { (v * b).clamp(0.0, 1.0) };
        let grey_mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let contrast = |v: Vec<f64>| {
            if c == 1.0 {
                return v;
            }
            let m = grey_mean(&v);
            v.iter()
                .map(|x| (m + c * (x - m)).clamp(0.0, 1.0))
                .collect()
        };
        let jittered: Vec<f64> = if view.contrast_first {
            contrast(resized).into_iter().map(brighten).collect()
        } else {
            contrast(resized.into_iter().map(brighten).collect())
        };
        let sigma = view.sigma as f64;
        let blurred = blur(&blur(&jittered, size, sigma, true), size, sigma, false);
        blurred.iter().map(|v| (v - mean) / std).collect()
    }
}
