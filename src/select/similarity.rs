//! How alike two slices are, for the strategies that do not hash: SSIM and normalised
//! mutual information, on slices resized (Pillow's LANCZOS) to a common small size.

use crate::hash::pillow::{self, Luma8};

/// The side slices are resized to before comparing.
pub const SIDE: usize = 64;

/// The slice at the size the measures compare.
pub fn thumbnail(image: &Luma8) -> Luma8 {
    pillow::resize(image, SIDE, SIDE)
}

/// Mean structural similarity (Wang et al. 2004) over 7 x 7 windows, as scikit-image's
/// `structural_similarity` with its defaults (uniform windows, sample covariances,
/// K1 = 0.01, K2 = 0.03, data range 255).
pub fn ssim(a: &Luma8, b: &Luma8) -> f64 {
    const WIN: usize = 7;
    let (w, h) = (a.width, a.height);
    assert_eq!((w, h), (b.width, b.height), "compared images have one size");
    if w < WIN || h < WIN {
        return if a.pixels == b.pixels { 1.0 } else { 0.0 };
    }
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let n = (WIN * WIN) as f64;
    let cov_norm = n / (n - 1.0);
    let mut total = 0.0;
    let mut windows = 0.0;
    for y in 0..=h - WIN {
        for x in 0..=w - WIN {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..WIN {
                for dx in 0..WIN {
                    let i = (y + dy) * w + x + dx;
                    let (p, q) = (a.pixels[i] as f64, b.pixels[i] as f64);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa / n, sb / n);
            let va = cov_norm * (saa / n - ma * ma);
            let vb = cov_norm * (sbb / n - mb * mb);
            let vab = cov_norm * (sab / n - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * vab + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            windows += 1.0;
        }
    }
    total / windows
}

/// Normalised mutual information `2 I(A; B) / (H(A) + H(B))` of the grey levels in 32 bins:
/// 1 for images that determine each other, 0 for independent ones.
pub fn nmi(a: &Luma8, b: &Luma8) -> f64 {
    const BINS: usize = 32;
    assert_eq!(
        a.pixels.len(),
        b.pixels.len(),
        "compared images have one size"
    );
    let mut joint = [[0u32; BINS]; BINS];
    for (&p, &q) in a.pixels.iter().zip(&b.pixels) {
        joint[p as usize * BINS / 256][q as usize * BINS / 256] += 1;
    }
    let total = a.pixels.len() as f64;
    let entropy = |counts: &mut dyn Iterator<Item = u32>| -> f64 {
        counts
            .filter(|&c| c > 0)
            .map(|c| c as f64 / total)
            .map(|p| -p * p.ln())
            .sum()
    };
    let ha = entropy(&mut (0..BINS).map(|i| joint[i].iter().sum()));
    let hb = entropy(&mut (0..BINS).map(|j| (0..BINS).map(|i| joint[i][j]).sum()));
    let hab = entropy(&mut joint.iter().flatten().copied());
    if ha + hb == 0.0 {
        return 1.0;
    }
    2.0 * (ha + hb - hab) / (ha + hb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(f: impl Fn(usize, usize) -> u8) -> Luma8 {
        Luma8 {
            width: SIDE,
            height: SIDE,
            pixels: (0..SIDE * SIDE).map(|i| f(i % SIDE, i / SIDE)).collect(),
        }
    }

    #[test]
    fn identical_images_are_fully_similar_and_unrelated_ones_are_not() {
        let a = image(|x, y| ((x * 7 + y * 13) % 251) as u8);
        let b = image(|x, y| ((x * x + y * 3) % 256) as u8);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-12);
        assert!((nmi(&a, &a) - 1.0).abs() < 1e-12);
        assert!(ssim(&a, &b) < 0.5, "{}", ssim(&a, &b));
        assert!(nmi(&a, &b) < 0.5, "{}", nmi(&a, &b));
        // A brightness shift keeps the structure but not the luminance term.
        let brighter = image(|x, y| ((x * 7 + y * 13) % 251) as u8 / 2 + 60);
        assert!(ssim(&a, &brighter) > 0.5 && ssim(&a, &brighter) < 1.0);
    }
}
