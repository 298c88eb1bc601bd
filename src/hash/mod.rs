//! Perceptual hashes, bit for bit what Python's `imagehash` computes: dHash (the paper's),
//! pHash and aHash, on Pillow-exact greyscale conversion and LANCZOS resizing. The CPU path
//! is here; [`Hasher`] batches the same work on a wgpu device.

pub mod gpu;
pub mod pillow;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use thiserror::Error;

use crate::gpu::GpuError;
pub use gpu::{BufferImage, Hasher};
pub use pillow::Luma8;

#[derive(Debug, Error)]
pub enum HashError {
    /// An image file lim could not read; the message names it.
    #[error(transparent)]
    Image(#[from] crate::io::IoError),
    #[error("`{0}` is not a hash: {1}")]
    Parse(String, &'static str),
    #[error("{0}")]
    Kind(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Which of imagehash's functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `imagehash.dhash`: is each pixel's right neighbour brighter (the paper's hash).
    Dhash,
    /// `imagehash.phash`: the low frequencies of a DCT against their median.
    Phash,
    /// `imagehash.average_hash`: each pixel against the mean.
    Ahash,
}

impl FromStr for Algorithm {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Algorithm, HashError> {
        match s.to_ascii_lowercase().as_str() {
            "dhash" => Ok(Algorithm::Dhash),
            "phash" => Ok(Algorithm::Phash),
            "ahash" | "average_hash" => Ok(Algorithm::Ahash),
            _ => Err(HashError::Kind(format!(
                "`{s}` is not a hash algorithm: use dhash, phash or ahash"
            ))),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Dhash => "dhash",
            Algorithm::Phash => "phash",
            Algorithm::Ahash => "ahash",
        })
    }
}

/// An algorithm and its `hash_size`: hashes have `size * size` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashKind {
    pub algorithm: Algorithm,
    pub size: usize,
}

impl HashKind {
    pub fn new(algorithm: Algorithm, size: usize) -> Result<HashKind, HashError> {
        if !(2..=64).contains(&size) {
            return Err(HashError::Kind(format!(
                "hash size {size}: imagehash needs at least 2, lim at most 64"
            )));
        }
        Ok(HashKind { algorithm, size })
    }

    /// The paper's hash: dHash, 64 bits.
    pub const DHASH: HashKind = HashKind {
        algorithm: Algorithm::Dhash,
        size: 8,
    };

    /// The (width, height) images are resized to before hashing.
    pub fn resized(&self) -> (usize, usize) {
        let n = self.size;
        match self.algorithm {
            Algorithm::Dhash => (n + 1, n),
            Algorithm::Phash => (4 * n, 4 * n),
            Algorithm::Ahash => (n, n),
        }
    }
}

/// A hash: its bits in imagehash's order (row-major, first bit most significant).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hash {
    words: Vec<u64>,
    len: usize,
}

impl Hash {
    pub fn from_bits(bits: impl IntoIterator<Item = bool>) -> Hash {
        let mut words = Vec::new();
        let mut len = 0;
        for bit in bits {
            if len % 64 == 0 {
                words.push(0);
            }
            if bit {
                words[len / 64] |= 1 << (63 - len % 64);
            }
            len += 1;
        }
        Hash { words, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bit(&self, i: usize) -> bool {
        self.words[i / 64] >> (63 - i % 64) & 1 == 1
    }

    /// The number of differing bits. Both hashes must have the same length.
    pub fn hamming(&self, other: &Hash) -> u32 {
        assert_eq!(self.len, other.len, "hashes of different lengths");
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }
}

/// Hex as `str(imagehash_hash)` prints it: the bits as one number, zero-padded to
/// `ceil(bits / 4)` digits.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.len.div_ceil(4);
        let pad = digits * 4 - self.len;
        for d in 0..digits {
            let mut nibble = 0;
            for b in 0..4 {
                let i = (d * 4 + b) as isize - pad as isize;
                nibble = nibble << 1 | (i >= 0 && self.bit(i as usize)) as u32;
            }
            write!(f, "{nibble:x}")?;
        }
        Ok(())
    }
}

/// Parses what `Display` prints, as `imagehash.hex_to_hash` does: `floor(sqrt(4 * digits))^2` bits.
impl FromStr for Hash {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Hash, HashError> {
        let s = s.trim();
        let nibbles: Vec<u32> = s
            .chars()
            .map(|c| c.to_digit(16))
            .collect::<Option<_>>()
            .ok_or_else(|| HashError::Parse(s.into(), "not hexadecimal"))?;
        let side = ((nibbles.len() * 4) as f64).sqrt() as usize;
        let len = side * side;
        if len == 0 {
            return Err(HashError::Parse(s.into(), "too short"));
        }
        let all: Vec<bool> = nibbles
            .iter()
            .flat_map(|n| (0..4).rev().map(move |b| n >> b & 1 == 1))
            .collect();
        let (pad, bits) = all.split_at(all.len() - len);
        if pad.iter().any(|&b| b) {
            return Err(HashError::Parse(
                s.into(),
                "more bits than a square hash has",
            ));
        }
        Ok(Hash::from_bits(bits.iter().copied()))
    }
}

/// Opens an image file (PNG or JPEG) as Pillow's `convert('L')` would give it.
pub fn open_luma(path: &Path) -> Result<Luma8, HashError> {
    Ok(pillow::to_luma8(&crate::data::decode_image(path)?))
}

/// Hashes an image file (PNG or JPEG) on the CPU, as [`open_luma`] then [`hash_luma`] would.
/// An 8-bit grey PNG, as `lim preprocess` writes them, is hashed row by row as it decodes
/// ([`pillow::RowResizer`]), so the image itself is never held; anything else (colour, 16-bit,
/// interlaced, JPEG, or a PNG that does not decode) goes through [`open_luma`].
pub fn hash_file(path: &Path, kind: HashKind) -> Result<Hash, HashError> {
    let bytes = crate::io::read_file(path)?;
    if let Some(hash) = hash_grey_png(path, &bytes, kind)? {
        return Ok(hash);
    }
    let image = crate::data::decode_image_bytes(path, &bytes)?;
    Ok(hash_luma(&pillow::to_luma8(&image), kind))
}

/// [`hash_file`]'s row-by-row path, or `None` where it does not apply (the whole decode then
/// names any error).
fn hash_grey_png(path: &Path, bytes: &[u8], kind: HashKind) -> Result<Option<Hash>, HashError> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(None);
    }
    let Ok(mut reader) = png::Decoder::new(std::io::Cursor::new(bytes)).read_info() else {
        return Ok(None);
    };
    let info = reader.info();
    let grey8 = info.color_type == png::ColorType::Grayscale
        && info.bit_depth == png::BitDepth::Eight
        && !info.interlaced;
    if !grey8 {
        return Ok(None);
    }
    let (width, height) = (info.width as usize, info.height as usize);
    crate::io::limits::check_voxels(
        path,
        "the image's width and height",
        &[width as u64, height as u64],
    )?;
    let (w, h) = kind.resized();
    let mut resizer = pillow::RowResizer::new(width, height, w, h);
    for _ in 0..height {
        let row = resizer.push_with(|slot| match reader.read_row(slot) {
            Ok(Some(_)) => Ok(()),
            _ => Err(()),
        });
        if row.is_err() {
            return Ok(None);
        }
    }
    // To the end of the image data, as a whole decode reads it (a broken last chunk fails).
    if !matches!(reader.read_row(&mut []), Ok(None)) {
        return Ok(None);
    }
    Ok(Some(bits_of(&resizer.finish().pixels, kind)))
}

/// Hashes an 8-bit greyscale image on the CPU.
pub fn hash_luma(image: &Luma8, kind: HashKind) -> Hash {
    let (width, height) = kind.resized();
    bits_of(&pillow::resize(image, width, height).pixels, kind)
}

/// The hash of an image already resized to `kind.resized()`.
pub fn bits_of(resized: &[u8], kind: HashKind) -> Hash {
    let n = kind.size;
    match kind.algorithm {
        Algorithm::Dhash => Hash::from_bits((0..n * n).map(|i| {
            let (r, c) = (i / n, i % n);
            resized[r * (n + 1) + c + 1] > resized[r * (n + 1) + c]
        })),
        Algorithm::Ahash => {
            let mean = resized.iter().map(|&p| p as f64).sum::<f64>() / resized.len() as f64;
            Hash::from_bits(resized.iter().map(|&p| p as f64 > mean))
        }
        Algorithm::Phash => {
            let low = dct_low(resized, 4 * n, n);
            phash_bits(&low, median(&low))
        }
    }
}

/// pHash's bits: each low-frequency coefficient strictly above the median.
pub fn phash_bits(low: &[f64], median: f64) -> Hash {
    Hash::from_bits(low.iter().map(|&c| c > median))
}

/// numpy's median of an even count: the mean of the two middle values.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// `cos(pi k (2i + 1) / (2 size))` times 2: row `k` of the unnormalised DCT-II (scipy's
/// `fftpack.dct`, `norm=None`), for `k < n`.
pub fn dct_matrix(size: usize, n: usize) -> Vec<f64> {
    let mut c = Vec::with_capacity(n * size);
    for k in 0..n {
        for i in 0..size {
            c.push(
                2.0 * (std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2 * size) as f64)
                    .cos(),
            );
        }
    }
    c
}

/// The top-left `n x n` block of `dct(dct(pixels, axis=0), axis=1)` of a `size x size`
/// image, in f64, row-major: `C P C^T` with only the `n` lowest rows of `C`.
///
/// Where symmetry makes a coefficient exactly zero (an upscaled tiny image, a constant one),
/// scipy's FFT-based DCT gives exactly 0.0 and a direct sum of cosines a rounding residue
/// near 1e-12; the median test then sees a tie, so residues are snapped to 0.0 as scipy has
/// them. Genuine coefficients are sums of integers times cosines, far above the snapping bound.
pub fn dct_low(pixels: &[u8], size: usize, n: usize) -> Vec<f64> {
    let c = dct_matrix(size, n);
    // t = C P: n x size
    let mut t = vec![0.0; n * size];
    for k in 0..n {
        for i in 0..size {
            let ck = c[k * size + i];
            for j in 0..size {
                t[k * size + j] += ck * pixels[i * size + j] as f64;
            }
        }
    }
    // |coefficient| <= 4 * sum of pixels: the residue bound is relative to that.
    let snap = 4.0 * pixels.iter().map(|&p| p as f64).sum::<f64>() * 1e-12;
    let mut out = vec![0.0; n * n];
    for k in 0..n {
        for l in 0..n {
            let c: f64 = (0..size).map(|j| t[k * size + j] * c[l * size + j]).sum();
            out[k * n + l] = if c.abs() <= snap { 0.0 } else { c };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_like_imagehash() {
        let h = Hash::from_bits((0..64).map(|i| i % 3 == 0));
        assert_eq!(h.to_string(), "9249249249249249");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        // 9 bits print as 3 digits, zero-padded on the left.
        let h9 = Hash::from_bits([true, false, false, false, false, false, false, false, true]);
        assert_eq!(h9.to_string(), "101");
        assert_eq!("101".parse::<Hash>().unwrap(), h9);
        assert!("zz".parse::<Hash>().is_err());
        assert!(
            "fff".parse::<Hash>().is_err(),
            "12 bits set, a 9-bit hash holds 9"
        );
    }

    #[test]
    fn hamming_counts_differing_bits() {
        let a: Hash = "ffff000000000000".parse().unwrap();
        let b: Hash = "0fff000000000001".parse().unwrap();
        assert_eq!(a.hamming(&b), 5);
        assert_eq!(a.hamming(&a), 0);
    }

    #[test]
    fn dct_of_a_constant_image_is_its_dc_term_only() {
        let low = dct_low(&[10; 32 * 32], 32, 8);
        assert!((low[0] - 4.0 * 10.0 * 32.0 * 32.0).abs() < 1e-6);
        assert!(low[1..].iter().all(|c| c.abs() < 1e-9));
    }
}
