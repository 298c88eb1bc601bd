//! Pillow's image handling, exactly as imagehash sees it: `convert('L')` and the 8-bit
//! LANCZOS `resize` of Pillow 9 to 12 (`libImaging/Convert.c`, `libImaging/Resample.c`).

use image::DynamicImage;

use crate::simd::with_avx2;

/// An 8-bit greyscale image, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Luma8 {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// ITU-R 601-2 luma in Pillow's fixed point: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `image.convert('L')` for an image as Pillow opens it: RGB(A) through the fixed-point luma
/// (alpha ignored); grey with alpha keeps the grey; 16-bit grey (Pillow's `I;16`) is clipped
/// to 0..255, not rescaled; 16-bit colour keeps the high byte of each sample, as Pillow's PNG
/// reader does.
pub fn to_luma8(image: &DynamicImage) -> Luma8 {
    // Pillow reads 16-bit colour PNGs as 8-bit, keeping the high bytes.
    let luma16 = |c: &[u16]| luma((c[0] >> 8) as u8, (c[1] >> 8) as u8, (c[2] >> 8) as u8);
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixels: Vec<u8> = match image {
        DynamicImage::ImageLuma8(i) => i.as_raw().clone(),
        DynamicImage::ImageLumaA8(i) => i.pixels().map(|p| p.0[0]).collect(),
        DynamicImage::ImageRgb8(i) => i.pixels().map(|p| luma(p.0[0], p.0[1], p.0[2])).collect(),
        DynamicImage::ImageRgba8(i) => i.pixels().map(|p| luma(p.0[0], p.0[1], p.0[2])).collect(),
        DynamicImage::ImageLuma16(i) => i.pixels().map(|p| p.0[0].min(255) as u8).collect(),
        DynamicImage::ImageLumaA16(i) => i.pixels().map(|p| (p.0[0] >> 8) as u8).collect(),
        DynamicImage::ImageRgb16(i) => i.pixels().map(|p| luma16(&p.0)).collect(),
        DynamicImage::ImageRgba16(i) => i.pixels().map(|p| luma16(&p.0)).collect(),
        other => other.to_luma8().into_raw(),
    };
    Luma8 {
        width,
        height,
        pixels,
    }
}

/// Pillow's fixed-point precision for 8-bit images: 32 - 8 - 2 bits.
pub const PRECISION_BITS: u32 = 22;

/// The LANCZOS (a = 3) kernel, as Pillow evaluates it in double.
fn lanczos(x: f64) -> f64 {
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            return 1.0;
        }
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// One axis of a resize: for each output position, the first input position and the
/// fixed-point weights of the inputs from there (`Resample.c`'s `precompute_coeffs` and
/// `normalize_coeffs_8bpc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coefficients {
    /// Weights per output (the longest window); shorter windows are padded with zeros.
    pub taps: usize,
    /// `(first input, window length)` per output.
    pub bounds: Vec<(usize, usize)>,
    /// `taps` weights per output.
    pub weights: Vec<i32>,
}

impl Coefficients {
    pub fn new(in_size: usize, out_size: usize) -> Coefficients {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 3.0 * filterscale;
        let taps = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0; out_size * taps];
        let mut k = vec![0.0f64; taps];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; both values are rounded by the + 0.5.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut total = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(xmax) {
                *w = lanczos((x as f64 + xmin as f64 - center + 0.5) / filterscale);
                total += *w;
            }
            for x in 0..xmax {
                if total != 0.0 {
                    k[x] /= total;
                }
                let scaled = k[x] * (1u32 << PRECISION_BITS) as f64;
                weights[xx * taps + x] = if k[x] < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                };
            }
            bounds.push((xmin, xmax));
        }
        Coefficients {
            taps,
            bounds,
            weights,
        }
    }

    /// The input positions any output reads: `first..end`.
    pub fn span(&self) -> (usize, usize) {
        let first = self.bounds.first().map_or(0, |b| b.0);
        let end = self.bounds.last().map_or(0, |b| b.0 + b.1);
        (first, end)
    }
}

/// Pillow's `clip8`: the accumulator back to a byte.
#[inline(always)]
pub fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `image.resize((width, height), Image.LANCZOS)` for an 8-bit image: horizontal pass first
/// (over the rows the vertical pass reads), an 8-bit image in between, then vertical; an
/// axis whose size does not change is not resampled.
pub fn resize(image: &Luma8, width: usize, height: usize) -> Luma8 {
    with_avx2!(resize_body(image, width, height))
}

#[inline(always)]
fn resize_body(image: &Luma8, width: usize, height: usize) -> Luma8 {
    let vertical = (height != image.height).then(|| Coefficients::new(image.height, height));
    let (row0, row_end) = vertical
        .as_ref()
        .map_or((0, image.height), Coefficients::span);
    let mid = if width != image.width {
        let h = Coefficients::new(image.width, width);
        let mut out = Vec::with_capacity((row_end - row0) * width);
        for y in row0..row_end {
            let row = &image.pixels[y * image.width..(y + 1) * image.width];
            for (xx, &(xmin, len)) in h.bounds.iter().enumerate() {
                let k = &h.weights[xx * h.taps..xx * h.taps + len];
                let acc = row[xmin..xmin + len]
                    .iter()
                    .zip(k)
                    .fold(1i32 << (PRECISION_BITS - 1), |s, (&p, &w)| s + p as i32 * w);
                out.push(clip8(acc));
            }
        }
        out
    } else {
        image.pixels[row0 * image.width..row_end * image.width].to_vec()
    };
    let Some(v) = vertical else {
        return Luma8 {
            width,
            height,
            pixels: mid,
        };
    };
    let mut out = vec![0u8; width * height];
    for (yy, &(ymin, len)) in v.bounds.iter().enumerate() {
        let k = &v.weights[yy * v.taps..yy * v.taps + len];
        for x in 0..width {
            let acc = (0..len).fold(1i32 << (PRECISION_BITS - 1), |s, t| {
                s + mid[(ymin - row0 + t) * width + x] as i32 * k[t]
            });
            out[yy * width + x] = clip8(acc);
        }
    }
    Luma8 {
        width,
        height,
        pixels: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillows_fixed_point() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        // (255*19595 + 0x8000) >> 16 = 76, and so on.
        assert_eq!(
            (luma(255, 0, 0), luma(0, 255, 0), luma(0, 0, 255)),
            (76, 150, 29)
        );
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point_and_cover_the_input() {
        for (input, output) in [(512, 9), (512, 8), (512, 32), (7, 3), (3, 9), (100, 100)] {
            let c = Coefficients::new(input, output);
            assert_eq!(c.bounds.len(), output);
            for (xx, &(xmin, len)) in c.bounds.iter().enumerate() {
                assert!(xmin + len <= input && len <= c.taps);
                let sum: i64 = c.weights[xx * c.taps..xx * c.taps + len]
                    .iter()
                    .map(|&w| w as i64)
                    .sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= len as i64,
                    "{input}->{output} at {xx}: {sum}"
                );
            }
        }
    }

    #[test]
    fn a_constant_image_stays_constant_and_identity_sizes_are_copies() {
        let image = Luma8 {
            width: 37,
            height: 23,
            pixels: vec![93; 37 * 23],
        };
        assert_eq!(resize(&image, 9, 8).pixels, vec![93; 72]);
        assert_eq!(resize(&image, 37, 23), image);
    }
}
