//! From physical values (HU) to grey levels: windows for the default mode, and the paper's
//! two per-slice min-max normalisations with their quirks.

use std::str::FromStr;

use crate::io::volume::Rescale;
use crate::simd::with_avx2;

/// How values map to grey levels in the default mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// Each slice's own minimum to maximum (padding left out).
    MinMax,
    /// `center - width / 2 .. center + width / 2` to the full grey range, clipped.
    Fixed { center: f64, width: f64 },
    /// The DICOM file's own first WindowCenter / WindowWidth.
    Dicom,
}

/// Named windows (W/L in HU), as radiology viewers preset them.
pub const PRESETS: [(&str, f64, f64); 5] = [
    ("lung", -600.0, 1500.0),
    ("mediastinum", 40.0, 400.0),
    ("abdomen", 60.0, 400.0),
    ("bone", 400.0, 1800.0),
    ("brain", 40.0, 80.0),
];

impl FromStr for Window {
    type Err = String;
    /// `minmax`, `dicom`, a preset name, or `W/L` (width / level, e.g. `1500/-600`).
    fn from_str(s: &str) -> Result<Window, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "minmax" {
            return Ok(Window::MinMax);
        }
        if s == "dicom" {
            return Ok(Window::Dicom);
        }
        if let Some(&(_, center, width)) = PRESETS.iter().find(|p| p.0 == s) {
            return Ok(Window::Fixed { center, width });
        }
        let parsed = s.split_once('/').and_then(|(w, l)| {
            Some((w.trim().parse::<f64>().ok()?, l.trim().parse::<f64>().ok()?))
        });
        match parsed {
            Some((width, center)) if width > 0.0 && center.is_finite() => {
                Ok(Window::Fixed { center, width })
            }
            _ => {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                Err(format!(
                    "`{s}` is not a window: use minmax, dicom, {}, or W/L such as 1500/-600",
                    names.join(", ")
                ))
            }
        }
    }
}

/// The range a slice's values were mapped from, for the manifest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub low: f64,
    pub high: f64,
}

/// Round half to even, then clamp to `0..=max`: OpenCV's `saturate_cast` of a double, which
/// also sends NaN and infinities to 0.
#[inline(always)]
pub fn quantise(v: f64, max: f64) -> f64 {
    // 1.5 * 2^52: adding and subtracting it rounds to an integer, half to even, in the default
    // rounding mode (exact below 2^51), without the libm call that round_ties_even becomes on
    // baseline x86-64. Written with selects, not branches, so that loops over it vectorise.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let rounded = (v.max(0.0).min(max) + ROUND) - ROUND;
    if v.is_finite() { rounded } else { 0.0 }
}

/// Default mode: values in `0..=max` (before rounding), `None` marking padding. Returns the
/// range mapped from.
pub fn window(
    values: &[Option<f64>],
    window: Window,
    dicom_window: Option<(f64, f64)>,
    max: f64,
    out: &mut Vec<f64>,
) -> Range {
    let range = match (window, dicom_window) {
        (Window::Fixed { center, width }, _) | (Window::Dicom, Some((center, width))) => Range {
            low: center - width / 2.0,
            high: center + width / 2.0,
        },
        (Window::MinMax | Window::Dicom, _) => {
            let (low, high) = values
                .iter()
                .flatten()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            if low > high {
                Range {
                    low: 0.0,
                    high: 0.0,
                }
            } else {
                Range { low, high }
            }
        }
    };
    let span = range.high - range.low;
    out.clear();
    out.extend(values.iter().map(|v| match v {
        Some(v) if span > 0.0 => ((v - range.low) / span * max).clamp(0.0, max),
        _ => 0.0,
    }));
    range
}

/// numpy's `min()` / `max()`: NaN if any value is NaN. Eight lanes, so that it vectorises.
#[inline(always)]
fn numpy_min_max(values: &[f64]) -> (f64, f64) {
    let mut lo = [f64::INFINITY; 8];
    let mut hi = [f64::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..8 {
            let v = chunk[l];
            lo[l] = if v < lo[l] { v } else { lo[l] };
            hi[l] = if v > hi[l] { v } else { hi[l] };
            nan[l] |= v.is_nan();
        }
    }
    for &v in tail {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
        nan[0] |= v.is_nan();
    }
    if nan.contains(&true) {
        return (f64::NAN, f64::NAN);
    }
    (
        lo.into_iter().fold(f64::INFINITY, f64::min),
        hi.into_iter().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// The paper's PET-CT (NIfTI) script: `(img - min) / (max - min + 1e-5) * 255` in float64,
/// then `cv2.imwrite`'s rounding.
pub fn paper_nifti(values: &[f64], out: &mut Vec<u8>) -> Range {
    with_avx2!(paper_nifti_body(values, out))
}

#[inline(always)]
fn paper_nifti_body(values: &[f64], out: &mut Vec<u8>) -> Range {
    let (min, max) = numpy_min_max(values);
    let denom = max - min + 1e-5;
    out.clear();
    out.extend(
        values
            .iter()
            .map(|&v| quantise((v - min) / denom * 255.0, 255.0) as u8),
    );
    Range {
        low: min,
        high: max,
    }
}

/// `paper_nifti` of integer stored values through `rescale`, with each value of the slice's
/// stored range computed once, in the same f64 arithmetic, and looked up per pixel (the
/// division is most of the cost). `None` where a table would not pay (a range wider than the
/// slice) or the rescaled ends are not finite; the rescale is monotone, so its ends are the
/// rescaled slice's minimum and maximum.
pub fn paper_nifti_stored<T>(stored: &[T], rescale: Rescale, out: &mut Vec<u8>) -> Option<Range>
where
    T: Copy + Ord + Into<i64>,
{
    with_avx2!(paper_nifti_stored_body(stored, rescale, out))
}

#[inline(always)]
fn paper_nifti_stored_body<T>(stored: &[T], rescale: Rescale, out: &mut Vec<u8>) -> Option<Range>
where
    T: Copy + Ord + Into<i64>,
{
    // Folds of `Ord::min` and `max` vectorise; `Iterator::min` did not.
    let first = *stored.first()?;
    let lo: i64 = stored.iter().fold(first, |a, &b| a.min(b)).into();
    let hi: i64 = stored.iter().fold(first, |a, &b| a.max(b)).into();
    if hi - lo >= stored.len() as i64 {
        return None;
    }
    let (a, b) = (rescale.apply(lo as f64), rescale.apply(hi as f64));
    if !(a.is_finite() && b.is_finite()) {
        return None;
    }
    let (min, max) = (a.min(b), a.max(b));
    let denom = max - min + 1e-5;
    let grey = |v: i64| quantise((rescale.apply(v as f64) - min) / denom * 255.0, 255.0) as u8;
    out.clear();
    if hi - lo <= u16::MAX.into() {
        let table = u16_table((hi - lo) as usize + 1, |d| grey(lo + d as i64));
        out.extend(
            stored
                .iter()
                .map(|&v| table[usize::from((v.into() - lo) as u16)]),
        );
    } else {
        let table: Vec<u8> = (lo..=hi).map(grey).collect();
        out.extend(stored.iter().map(|&v| table[(v.into() - lo) as usize]));
    }
    Some(Range {
        low: min,
        high: max,
    })
}

/// A table of 65536 grey levels whose first `levels` are `grey(0..levels)`: indexed by a u16,
/// it needs no bounds check per pixel.
#[inline(always)]
fn u16_table(levels: usize, grey: impl Fn(usize) -> u8) -> Box<[u8; 1 << 16]> {
    let mut table: Box<[u8; 1 << 16]> = vec![0; 1 << 16]
        .into_boxed_slice()
        .try_into()
        .expect("65536 entries");
    for (d, level) in table[..levels].iter_mut().enumerate() {
        *level = grey(d);
    }
    table
}

/// The paper's LIDC (DICOM) script on one slice of stored values:
/// `int16` cast, raw `-2000` to 0, `int16(slope * x)` when the slope is not 1, `+= int16(intercept)`
/// (RescaleSlope and RescaleIntercept default to 1 and -1024), all in wrapping int16; then
/// `(img - min) / (max - min) * 255` with int16 differences and no epsilon, and `cv2.imwrite`'s
/// rounding (a constant slice gives NaN, hence 0).
pub fn paper_dicom(
    stored: &[i32],
    slope: Option<f64>,
    intercept: Option<f64>,
    out: &mut Vec<u8>,
) -> Range {
    with_avx2!(paper_dicom_body(stored, slope, intercept, out))
}

#[inline(always)]
fn paper_dicom_body(
    stored: &[i32],
    slope: Option<f64>,
    intercept: Option<f64>,
    out: &mut Vec<u8>,
) -> Range {
    let slope = slope.unwrap_or(1.0);
    let intercept = (intercept.unwrap_or(-1024.0) as i32) as i16;
    // One simple pass per step of the script, so that each vectorises.
    let mut img: Vec<i16> = stored
        .iter()
        .map(|&s| s as i16)
        .map(|v| if v == -2000 { 0 } else { v })
        .collect();
    if slope != 1.0 {
        for v in &mut img {
            *v = ((slope * *v as f64) as i32) as i16;
        }
    }
    for v in &mut img {
        *v = v.wrapping_add(intercept);
    }
    let first = img.first().copied().unwrap_or(0);
    let min = img.iter().fold(first, |a, &b| a.min(b));
    let max = img.iter().fold(first, |a, &b| a.max(b));
    let denom = max.wrapping_sub(min) as f64;
    let grey = |v: i16| quantise(v.wrapping_sub(min) as f64 / denom * 255.0, 255.0) as u8;
    out.clear();
    // Each grey level of the slice's range computed once and looked up per pixel (the division
    // is most of the cost), where the range is narrower than the slice.
    let levels = (max as i32 - min as i32) as usize + 1;
    if levels <= img.len() {
        let table = u16_table(levels, |d| grey(min.wrapping_add(d as i16)));
        out.extend(
            img.iter()
                .map(|&v| table[usize::from(v.wrapping_sub(min) as u16)]),
        );
    } else {
        out.extend(img.iter().map(|&v| grey(v)));
    }
    Range {
        low: min as f64,
        high: max as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_from_presets_and_width_level() {
        assert_eq!(
            "lung".parse::<Window>().unwrap(),
            Window::Fixed {
                center: -600.0,
                width: 1500.0
            }
        );
        assert_eq!(
            "400/40".parse::<Window>().unwrap(),
            Window::Fixed {
                center: 40.0,
                width: 400.0
            }
        );
        assert_eq!("MinMax".parse::<Window>().unwrap(), Window::MinMax);
        assert!("wide".parse::<Window>().unwrap_err().contains("lung"));
        assert!("0/40".parse::<Window>().is_err());
    }

    #[test]
    fn quantise_rounds_half_to_even_and_saturates_like_opencv() {
        assert_eq!(quantise(0.5, 255.0), 0.0);
        assert_eq!(quantise(1.5, 255.0), 2.0);
        assert_eq!(quantise(254.5, 255.0), 254.0);
        assert_eq!(quantise(300.0, 255.0), 255.0);
        assert_eq!(quantise(-3.0, 255.0), 0.0);
        assert_eq!(quantise(f64::NAN, 255.0), 0.0);
        assert_eq!(quantise(f64::INFINITY, 255.0), 0.0);
    }

    #[test]
    fn window_maps_linearly_and_clips_with_padding_at_zero() {
        let mut out = Vec::new();
        let values = [Some(-1000.0), Some(-600.0), Some(150.0), Some(2000.0), None];
        let range = window(&values, "1500/-600".parse().unwrap(), None, 255.0, &mut out);
        assert_eq!(
            range,
            Range {
                low: -1350.0,
                high: 150.0
            }
        );
        assert_eq!(out, vec![350.0 / 1500.0 * 255.0, 127.5, 255.0, 255.0, 0.0]);
        let range = window(&values, Window::MinMax, None, 255.0, &mut out);
        assert_eq!(
            range,
            Range {
                low: -1000.0,
                high: 2000.0
            }
        );
        assert_eq!(out[0], 0.0);
        assert_eq!(out[3], 255.0);
        window(
            &[Some(5.0), Some(5.0)],
            Window::MinMax,
            None,
            255.0,
            &mut out,
        );
        assert_eq!(out, vec![0.0, 0.0], "a constant slice is black, not NaN");
    }

    #[test]
    fn paper_dicom_keeps_the_scripts_int16_quirks() {
        let mut out = Vec::new();
        // -2000 becomes 0 before the intercept; the default intercept is -1024.
        paper_dicom(&[-2000, 0, 1024], None, None, &mut out);
        assert_eq!(out, vec![0, 0, 255]);
        // A constant slice divides 0 by 0: NaN, written as 0.
        paper_dicom(&[7, 7], Some(1.0), Some(0.0), &mut out);
        assert_eq!(out, vec![0, 0]);
        // uint16 65535 is -1 as int16; the slope product is truncated toward zero.
        paper_dicom(&[65535, 3], Some(2.5), Some(0.0), &mut out);
        assert_eq!(out, vec![0, 255]);
        // int16 wrap-around: 32767 + 1 is -32768, the new minimum.
        paper_dicom(&[32767, 0], Some(1.0), Some(1.0), &mut out);
        assert_eq!(out, vec![0, 255]);
        // The int16 differences wrap too: 0 - (-32768) is -32768, and max - min is -1, so the
        // middle value saturates instead of landing at 128.
        paper_dicom(&[-32768, 0, 32767], Some(1.0), Some(0.0), &mut out);
        assert_eq!(out, vec![0, 255, 255]);
    }

    /// The LIDC script's steps, one pixel at a time, as numpy does them.
    fn paper_dicom_by_pixel(stored: &[i32], slope: f64, intercept: i16) -> Vec<u8> {
        let img: Vec<i16> = stored
            .iter()
            .map(|&s| {
                let v = if s as i16 == -2000 { 0 } else { s as i16 };
                let v = if slope != 1.0 {
                    (slope * v as f64) as i32 as i16
                } else {
                    v
                };
                v.wrapping_add(intercept)
            })
            .collect();
        let (min, max) = (*img.iter().min().unwrap(), *img.iter().max().unwrap());
        let denom = max.wrapping_sub(min) as f64;
        img.iter()
            .map(|&v| quantise(v.wrapping_sub(min) as f64 / denom * 255.0, 255.0) as u8)
            .collect()
    }

    #[test]
    fn paper_dicom_on_wide_and_narrow_slices_equals_the_script_pixel_by_pixel() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        let mut rng = StdRng::seed_from_u64(17);
        // Narrow ranges take the table, wide ones (wider than the slice) the division.
        for (len, low, high) in [
            (4096, -2100, 1900),
            (4096, 0, 4095),
            (300, -1024, 3071),
            (5000, 30000, 40000),
            (64, -40000, 70000),
        ] {
            let stored: Vec<i32> = (0..len).map(|_| rng.random_range(low..=high)).collect();
            for (slope, intercept) in [(1.0, -1024.0), (2.5, 0.0), (-1.0, 7.0), (1.0, 32000.0)] {
                let mut out = Vec::new();
                paper_dicom(&stored, Some(slope), Some(intercept), &mut out);
                let want = paper_dicom_by_pixel(&stored, slope, intercept as i16);
                assert_eq!(
                    out, want,
                    "{len} values in {low}..={high}, {slope} x + {intercept}"
                );
            }
        }
    }

    #[test]
    fn paper_nifti_has_the_epsilon_and_propagates_nan() {
        let mut out = Vec::new();
        paper_nifti(&[0.0, 1.0], &mut out);
        assert_eq!(out, vec![0, 255]);
        paper_nifti(&[3.0, 3.0], &mut out);
        assert_eq!(out, vec![0, 0]);
        paper_nifti(&[0.0, f64::NAN, 10.0], &mut out);
        assert_eq!(out, vec![0, 0, 0]);
    }

    #[test]
    fn paper_nifti_stored_equals_paper_nifti_of_the_rescaled_values() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        let mut rng = StdRng::seed_from_u64(13);
        let rescales = [
            Rescale::IDENTITY,
            Rescale {
                slope: 1.0,
                inter: -1024.0,
            },
            Rescale {
                slope: 0.37,
                inter: 12.5,
            },
            Rescale {
                slope: -2.0,
                inter: 3.0,
            },
            Rescale {
                slope: 0.0,
                inter: 5.0,
            },
        ];
        for (len, spread) in [(1, 1), (7, 3), (4096, 1000), (4096, 4096), (999, 60000)] {
            let stored: Vec<i32> = (0..len)
                .map(|_| rng.random_range(0..spread) - spread / 2)
                .collect();
            for rescale in rescales {
                let values: Vec<f64> = stored.iter().map(|&v| rescale.apply(v as f64)).collect();
                let (mut want, mut got) = (Vec::new(), Vec::new());
                let range = paper_nifti(&values, &mut want);
                match paper_nifti_stored(&stored, rescale, &mut got) {
                    Some(r) => {
                        assert_eq!((got, r), (want, range), "{len} x {spread}, {rescale:?}");
                    }
                    // Only a range wider than the slice goes the general way.
                    None => assert!(spread > len, "{len} x {spread}, {rescale:?}"),
                }
            }
        }
        let mut out = Vec::new();
        let infinite = Rescale {
            slope: f64::INFINITY,
            inter: 0.0,
        };
        assert_eq!(paper_nifti_stored(&[0i16, 1], infinite, &mut out), None);
        assert_eq!(
            paper_nifti_stored::<u8>(&[], Rescale::IDENTITY, &mut out),
            None
        );
    }
}
