//! Pillow's image handling, exactly as imagehash sees it: `convert('L')` and the 8-bit
//! LANCZOS `resize` of Pillow 9 to 12 (`libImaging/Convert.c`, `libImaging/Resample.c`).

use std::cell::RefCell;
use std::rc::Rc;

use image::DynamicImage;

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

/// The coefficients of one axis, computed once per thread for each pair of sizes: Pillow
/// computes them in every call, at a cost (a sine per tap) near that of the resize itself.
fn coefficients(in_size: usize, out_size: usize) -> Rc<Axis> {
    type Sizes = (usize, usize);
    thread_local! {
        static CACHE: RefCell<Vec<(Sizes, Rc<Axis>)>> = const { RefCell::new(Vec::new()) };
    }
    CACHE.with_borrow_mut(|cache| {
        if let Some((_, c)) = cache.iter().find(|(key, _)| *key == (in_size, out_size)) {
            return c.clone();
        }
        let c = Rc::new(Axis::new(Coefficients::new(in_size, out_size)));
        cache.truncate(7);
        cache.insert(0, ((in_size, out_size), c.clone()));
        c
    })
}

/// An axis's coefficients, and each weight split for 16-bit multiplies:
/// `w = hi * 2^SPLIT_BITS + lo` with `0 <= lo < 2^SPLIT_BITS`, so that a sum of pixel x
/// weight products is `(sum p * hi) << SPLIT_BITS + sum p * lo`, exactly, from two
/// 16 x 16-bit multiply-adds per pixel.
struct Axis {
    c: Coefficients,
    /// How far into a row the 16-pixel chunks of the windows read: at most the input size
    /// plus 15.
    reach: usize,
    /// Taps per output, rounded up to a whole number of 16-pixel chunks (zero weights after
    /// the window).
    stride: usize,
    hi: Vec<i16>,
    lo: Vec<i16>,
}

const SPLIT_BITS: u32 = 11;

impl Axis {
    fn new(c: Coefficients) -> Axis {
        let stride = c.taps.div_ceil(16) * 16;
        let (mut hi, mut lo) = (
            vec![0; c.bounds.len() * stride],
            vec![0; c.bounds.len() * stride],
        );
        for (xx, &(_, len)) in c.bounds.iter().enumerate() {
            for t in 0..len {
                let w = c.weights[xx * c.taps + t];
                hi[xx * stride + t] = i16::try_from(w >> SPLIT_BITS).expect("weights below 2^26");
                lo[xx * stride + t] = (w & ((1 << SPLIT_BITS) - 1)) as i16;
            }
        }
        let reach = c
            .bounds
            .iter()
            .map(|&(xmin, len)| xmin + len.div_ceil(16) * 16)
            .max()
            .unwrap_or(0);
        Axis {
            c,
            reach,
            stride,
            hi,
            lo,
        }
    }
}

/// `image.resize((width, height), Image.LANCZOS)` for an 8-bit image: horizontal pass first
/// (over the rows the vertical pass reads), an 8-bit image in between, then vertical; an
/// axis whose size does not change is not resampled.
pub fn resize(image: &Luma8, width: usize, height: usize) -> Luma8 {
    let mut resizer = RowResizer::new(image.width, image.height, width, height);
    resizer.push_image(image);
    resizer.finish()
}

/// [`resize`] fed one row at a time, top to bottom, as a decoder delivers them: the rows the
/// vertical pass reads go through the horizontal pass, [`BLOCK`] at a time, and nothing more
/// of the image is kept.
pub struct RowResizer {
    in_size: (usize, usize),
    out_size: (usize, usize),
    horizontal: Option<Rc<Axis>>,
    vertical: Option<Rc<Axis>>,
    /// The input rows the vertical pass reads: `rows.0..rows.1`.
    rows: (usize, usize),
    /// Rows pushed so far.
    next: usize,
    /// The horizontal pass's output (or the rows themselves), for `rows`.
    mid: Vec<u8>,
    /// Rows waiting for the horizontal pass, each `in_width` pixels then 16 spare bytes that
    /// whole 16-pixel chunks of a window may read.
    pending: Vec<u8>,
    pending_rows: usize,
    /// Where rows outside `rows` are written.
    discard: Vec<u8>,
}

/// Rows that go through the horizontal pass together: each weight is loaded once for all.
const BLOCK: usize = 4;

impl RowResizer {
    pub fn new(in_width: usize, in_height: usize, width: usize, height: usize) -> RowResizer {
        let vertical = (height != in_height).then(|| coefficients(in_height, height));
        let horizontal = (width != in_width).then(|| coefficients(in_width, width));
        let rows = vertical.as_deref().map_or((0, in_height), |v| v.c.span());
        RowResizer {
            in_size: (in_width, in_height),
            out_size: (width, height),
            horizontal,
            vertical,
            rows,
            next: 0,
            mid: Vec::with_capacity((rows.1 - rows.0) * width),
            pending: vec![0; BLOCK * (in_width + 16)],
            pending_rows: 0,
            discard: Vec::new(),
        }
    }

    /// The next row of the input image, `in_width` pixels.
    pub fn push(&mut self, row: &[u8]) {
        assert_eq!(row.len(), self.in_size.0, "a row of the input's width");
        self.push_with(|slot| {
            slot.copy_from_slice(row);
            Ok::<(), ()>(())
        })
        .expect("a copy does not fail");
    }

    /// The next row of the input image, written by `write` into the `in_width` bytes it is
    /// given (a decoder's output, so that the row is not copied again).
    pub fn push_with<E>(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let (y, width) = (self.next, self.in_size.0);
        self.next += 1;
        if !(self.rows.0..self.rows.1).contains(&y) {
            self.discard.resize(width, 0);
            return write(&mut self.discard);
        }
        if self.horizontal.is_none() {
            let start = self.mid.len();
            self.mid.resize(start + width, 0);
            return write(&mut self.mid[start..]);
        }
        let at = self.pending_rows * (width + 16);
        write(&mut self.pending[at..at + width])?;
        self.pending_rows += 1;
        if self.pending_rows == BLOCK || y + 1 == self.rows.1 {
            self.flush();
        }
        Ok(())
    }

    /// All rows of `image`: blocks of rows go through the horizontal pass where they lie, the
    /// bytes after each row (the next row's) standing in for its spare bytes.
    fn push_image(&mut self, image: &Luma8) {
        assert!(self.next == 0 && (image.width, image.height) == self.in_size);
        if let Some(h) = self.horizontal.clone() {
            let (w, out) = (image.width, self.out_size.0);
            let mut y = self.rows.0;
            while y + BLOCK <= self.rows.1
                && y * w + (BLOCK - 1) * w + h.reach <= image.pixels.len()
            {
                let start = self.mid.len();
                self.mid.resize(start + BLOCK * out, 0);
                horizontal::<BLOCK>(&image.pixels[y * w..], w, &h, &mut self.mid[start..]);
                y += BLOCK;
            }
            self.next = y;
        }
        for y in self.next..image.height {
            self.push(&image.pixels[y * image.width..(y + 1) * image.width]);
        }
    }

    /// The horizontal pass over the pending rows.
    fn flush(&mut self) {
        let h = self
            .horizontal
            .as_ref()
            .expect("flushed only with a horizontal pass");
        let (stride, width) = (self.in_size.0 + 16, self.out_size.0);
        let start = self.mid.len();
        self.mid.resize(start + self.pending_rows * width, 0);
        let out = &mut self.mid[start..];
        if self.pending_rows == BLOCK {
            horizontal::<BLOCK>(&self.pending, stride, h, out);
        } else {
            for r in 0..self.pending_rows {
                let row = &self.pending[r * stride..(r + 1) * stride];
                horizontal::<1>(row, stride, h, &mut out[r * width..(r + 1) * width]);
            }
        }
        self.pending_rows = 0;
    }

    /// The resized image, once every input row has been pushed.
    pub fn finish(self) -> Luma8 {
        assert_eq!(self.next, self.in_size.1, "rows pushed");
        let (width, height) = self.out_size;
        let Some(axis) = self.vertical else {
            return Luma8 {
                width,
                height,
                pixels: self.mid,
            };
        };
        let v = &axis.c;
        let mut out = vec![0u8; width * height];
        let mut acc = vec![0i32; width];
        for (yy, &(ymin, len)) in v.bounds.iter().enumerate() {
            acc.fill(1 << (PRECISION_BITS - 1));
            let k = &v.weights[yy * v.taps..yy * v.taps + len];
            for (t, &w) in k.iter().enumerate() {
                let row = &self.mid[(ymin - self.rows.0 + t) * width..][..width];
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a += p as i32 * w;
                }
            }
            for (o, &a) in out[yy * width..(yy + 1) * width].iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
        Luma8 {
            width,
            height,
            pixels: out,
        }
    }
}

/// The horizontal pass over `R` rows, `stride` bytes apart in `rows`, into `R` rows of `out`.
/// Whole 16-pixel chunks of the windows are read: up to `h.reach` bytes into each row.
fn horizontal<const R: usize>(rows: &[u8], stride: usize, h: &Axis, out: &mut [u8]) {
    assert!(rows.len() >= (R - 1) * stride + h.reach && out.len() >= R * h.c.bounds.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above; the sizes, just before.
        return unsafe { horizontal_avx2::<R>(rows, stride, h, out) };
    }
    let width = h.c.bounds.len();
    for r in 0..R {
        let row = &rows[r * stride..(r + 1) * stride];
        horizontal_scalar(row, &h.c, &mut out[r * width..(r + 1) * width]);
    }
}

/// Pillow's loop: per output, the sum of its window's pixels times their weights.
fn horizontal_scalar(row: &[u8], h: &Coefficients, out: &mut [u8]) {
    for (xx, &(xmin, len)) in h.bounds.iter().enumerate() {
        let k = &h.weights[xx * h.taps..xx * h.taps + len];
        let acc = row[xmin..xmin + len]
            .iter()
            .zip(k)
            .fold(1i32 << (PRECISION_BITS - 1), |s, (&p, &w)| s + p as i32 * w);
        out[xx] = clip8(acc);
    }
}

/// The same sums from the split weights, 16 pixels of each of the `R` rows per step with two
/// `vpmaddwd` each, every weight loaded once for the `R` rows. Integer sums are exact in any
/// order, so the bytes equal [`horizontal_scalar`]'s.
///
/// # Safety
/// The CPU has AVX2; `rows` holds `R` rows `stride` bytes apart, the last `h.reach` bytes
/// long at least; `out` holds `R` rows of `h`'s outputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2<const R: usize>(rows: &[u8], stride: usize, h: &Axis, out: &mut [u8]) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2")]
    fn total(v: __m256i) -> i32 {
        let half = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let pairs = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0b01_00_11_10));
        _mm_cvtsi128_si32(_mm_add_epi32(
            pairs,
            _mm_shuffle_epi32(pairs, 0b10_11_00_01),
        ))
    }
    let width = h.c.bounds.len();
    for (xx, &(xmin, len)) in h.c.bounds.iter().enumerate() {
        let chunks = len.div_ceil(16);
        let hi = &h.hi[xx * h.stride..xx * h.stride + chunks * 16];
        let lo = &h.lo[xx * h.stride..xx * h.stride + chunks * 16];
        let mut acc_hi = [_mm256_setzero_si256(); R];
        let mut acc_lo = [_mm256_setzero_si256(); R];
        for c in 0..chunks {
            // SAFETY: chunks end within `h.reach` bytes of each row's start, and the weights
            // hold `chunks * 16`.
            unsafe {
                let wh = _mm256_loadu_si256(hi.as_ptr().add(c * 16).cast());
                let wl = _mm256_loadu_si256(lo.as_ptr().add(c * 16).cast());
                for r in 0..R {
                    let at = rows.as_ptr().add(r * stride + xmin + c * 16);
                    let p = _mm256_cvtepu8_epi16(_mm_loadu_si128(at.cast()));
                    acc_hi[r] = _mm256_add_epi32(acc_hi[r], _mm256_madd_epi16(p, wh));
                    acc_lo[r] = _mm256_add_epi32(acc_lo[r], _mm256_madd_epi16(p, wl));
                }
            }
        }
        for r in 0..R {
            let acc = (total(acc_hi[r]) << SPLIT_BITS)
                .wrapping_add(total(acc_lo[r]))
                .wrapping_add(1 << (PRECISION_BITS - 1));
            out[r * width + xx] = clip8(acc);
        }
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

    /// Pillow's two passes, as `Resample.c` loops: every row through the scalar horizontal
    /// pass into an 8-bit image, then the vertical pass, output by output.
    fn pillows_loops(image: &Luma8, width: usize, height: usize) -> Luma8 {
        let mut mid = image.clone();
        if width != image.width {
            let h = Coefficients::new(image.width, width);
            let mut pixels = vec![0; width * image.height];
            for y in 0..image.height {
                let row = &image.pixels[y * image.width..(y + 1) * image.width];
                horizontal_scalar(row, &h, &mut pixels[y * width..(y + 1) * width]);
            }
            mid = Luma8 {
                width,
                height: image.height,
                pixels,
            };
        }
        if height == image.height {
            return mid;
        }
        let v = Coefficients::new(image.height, height);
        let mut pixels = vec![0; width * height];
        for (yy, &(ymin, len)) in v.bounds.iter().enumerate() {
            for x in 0..width {
                let acc = (0..len).fold(1i32 << (PRECISION_BITS - 1), |s, t| {
                    s + mid.pixels[(ymin + t) * width + x] as i32 * v.weights[yy * v.taps + t]
                });
                pixels[yy * width + x] = clip8(acc);
            }
        }
        Luma8 {
            width,
            height,
            pixels,
        }
    }

    /// The blocked, split-weight passes (AVX2 where the CPU has it), fed a whole image or row
    /// by row, give Pillow's loops' bytes on awkward shapes: windows shorter than a 16-pixel
    /// chunk and longer than many, window ends at the row's end, upsizing, one-pixel rows and
    /// columns, heights that leave partial blocks of rows, extreme pixels.
    #[test]
    fn the_fast_passes_equal_pillows_loops_on_awkward_shapes() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let sizes = [
            ((512, 512), (9, 8)),
            ((512, 512), (32, 32)),
            ((37, 23), (9, 8)),
            ((7, 5), (3, 9)),
            ((3, 9), (9, 3)),
            ((100, 99), (99, 100)),
            ((1, 7), (5, 1)),
            ((17, 16), (16, 17)),
            ((1000, 3), (1, 2)),
            ((16, 33), (15, 4)),
            ((33, 6), (31, 6)),
        ];
        for ((w, h), (ow, oh)) in sizes {
            for fill in 0..3 {
                let pixels = (0..w * h)
                    .map(|_| match fill {
                        0 => rng.random::<u8>(),
                        1 => 255 * rng.random_range(0..2u8),
                        _ => rng.random_range(0..3u8),
                    })
                    .collect();
                let image = Luma8 {
                    width: w,
                    height: h,
                    pixels,
                };
                let want = pillows_loops(&image, ow, oh);
                assert_eq!(resize(&image, ow, oh), want, "{w}x{h} -> {ow}x{oh}");
                let mut rows = RowResizer::new(w, h, ow, oh);
                for row in image.pixels.chunks_exact(w) {
                    rows.push(row);
                }
                assert_eq!(rows.finish(), want, "{w}x{h} -> {ow}x{oh}, row by row");
            }
        }
    }
}
