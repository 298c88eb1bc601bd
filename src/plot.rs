//! Line charts as PNG images, for training curves people would rather look at than read:
//! axes with round-numbered ticks, labels in an 8 x 8 bitmap font, one colour per series.

use std::path::Path;

use font8x8::legacy::BASIC_LEGACY;
use image::{Rgb, RgbImage};

use crate::io::IoError;

/// One line of a chart: `(x, y)` points in order of x; non-finite points are left out.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub colour: [u8; 3],
    /// A square at every point, for series of a few points.
    pub markers: bool,
}

pub const BLUE: [u8; 3] = PALETTE[0];
pub const ORANGE: [u8; 3] = PALETTE[1];
/// Colours for many series, matplotlib's `tab10`, in its order.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;
const LEFT: u32 = 80;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 50;
const GLYPH: u32 = 8;
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

fn text(image: &mut RgbImage, x: i64, y: i64, s: &str, colour: Rgb<u8>) {
    for (n, c) in s.chars().enumerate() {
        let glyph = BASIC_LEGACY
            .get(c as usize)
            .copied()
            .unwrap_or(BASIC_LEGACY[b'?' as usize]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                let (px, py) = (x + (n as i64) * GLYPH as i64 + col, y + row as i64);
                let inside =
                    px >= 0 && py >= 0 && px < image.width() as i64 && py < image.height() as i64;
                if bits >> col & 1 == 1 && inside {
                    image.put_pixel(px as u32, py as u32, colour);
                }
            }
        }
    }
}

fn line(image: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        // Two pixels thick.
        for (dx, dy) in [(0.0, 0.0), (0.0, 1.0)] {
            let (px, py) = ((x + dx).round(), (y + dy).round());
            if px >= 0.0 && py >= 0.0 && px < image.width() as f64 && py < image.height() as f64 {
                image.put_pixel(px as u32, py as u32, colour);
            }
        }
    }
}

/// Round tick values covering `[lo, hi]`: steps of 1, 2 or 5 times a power of ten.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON * hi.abs().max(1.0));
    let raw = span / 6.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * power);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    match v.abs() {
        a if !(1e-3..1e5).contains(&a) => format!("{v:.1e}"),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{}", (v * 100.0).round() / 100.0),
        _ => format!("{}", (v * 1e4).round() / 1e4),
    }
}

/// Draws `series` against shared axes.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> RgbImage {
    let mut image = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let range = |f: fn(&(f64, f64)) -> f64| {
        let lo = finite.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = finite.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        match (lo.is_finite(), lo < hi) {
            (true, true) => (lo, hi),
            (true, false) => (lo - 0.5, hi + 0.5),
            (false, _) => (0.0, 1.0),
        }
    };
    let (x_lo, x_hi) = range(|p| p.0);
    let (y_lo, y_hi) = range(|p| p.1);
    let (y_lo, y_hi) = (y_lo - 0.05 * (y_hi - y_lo), y_hi + 0.05 * (y_hi - y_lo));
    let (plot_w, plot_h) = (
        (WIDTH - LEFT - RIGHT) as f64,
        (HEIGHT - TOP - BOTTOM) as f64,
    );
    let to_px = |x: f64, y: f64| {
        (
            LEFT as f64 + (x - x_lo) / (x_hi - x_lo) * plot_w,
            TOP as f64 + (y_hi - y) / (y_hi - y_lo) * plot_h,
        )
    };
    for t in ticks(y_lo, y_hi) {
        let (_, py) = to_px(x_lo, t);
        line(
            &mut image,
            (LEFT as f64, py),
            ((WIDTH - RIGHT) as f64, py),
            GRID,
        );
        let s = label(t);
        text(
            &mut image,
            LEFT as i64 - 6 - 8 * s.len() as i64,
            py as i64 - 4,
            &s,
            INK,
        );
    }
    for t in ticks(x_lo, x_hi) {
        let (px, _) = to_px(t, y_lo);
        line(
            &mut image,
            (px, TOP as f64),
            (px, (HEIGHT - BOTTOM) as f64),
            GRID,
        );
        let s = label(t);
        text(
            &mut image,
            px as i64 - 4 * s.len() as i64,
            (HEIGHT - BOTTOM) as i64 + 8,
            &s,
            INK,
        );
    }
    let (x0, y0, x1, y1) = (
        LEFT as f64,
        TOP as f64,
        (WIDTH - RIGHT) as f64,
        (HEIGHT - BOTTOM) as f64,
    );
    for (a, b) in [((x0, y1), (x1, y1)), ((x0, y0), (x0, y1))] {
        line(&mut image, a, b, INK);
    }
    text(&mut image, LEFT as i64, 14, title, INK);
    let below = (HEIGHT - 18) as i64;
    text(
        &mut image,
        (WIDTH / 2) as i64 - 4 * x_label.len() as i64,
        below,
        x_label,
        INK,
    );
    text(&mut image, 8, TOP as i64 - 14, y_label, INK);
    // The legend goes in one row right of the title where it fits, else one entry a line in
    // the plot's lower right corner (empty for ROC curves).
    let entry_width = |s: &Series| 8 * s.name.len() as i64 + 30;
    let row: i64 = series.iter().map(entry_width).sum();
    let in_row = LEFT as i64 + 8 * title.len() as i64 + 16 + row <= (WIDTH - RIGHT) as i64;
    let widest = series.iter().map(entry_width).max().unwrap_or(0);
    let mut legend_x = (WIDTH - RIGHT) as i64;
    for (i, s) in series.iter().enumerate().rev() {
        let (x, y) = match in_row {
            true => {
                legend_x -= entry_width(s);
                (legend_x, 14)
            }
            false => (
                (WIDTH - RIGHT) as i64 - widest,
                (HEIGHT - BOTTOM) as i64 - 14 * (series.len() - i) as i64 - 4,
            ),
        };
        let colour = Rgb(s.colour);
        line(
            &mut image,
            (x as f64, y as f64 + 4.0),
            (x as f64 + 16.0, y as f64 + 4.0),
            colour,
        );
        text(&mut image, x + 20, y, s.name, INK);
        let mut previous: Option<(f64, f64)> = None;
        for &(x, y) in s.points {
            if !(x.is_finite() && y.is_finite()) {
                previous = None;
                continue;
            }
            let here = to_px(x, y);
            if let Some(p) = previous {
                line(&mut image, p, here, colour);
            }
            if s.markers {
                for d in -3..=3 {
                    let d = d as f64;
                    line(
                        &mut image,
                        (here.0 - 3.0, here.1 + d),
                        (here.0 + 3.0, here.1 + d),
                        colour,
                    );
                }
            }
            previous = Some(here);
        }
    }
    image
}

/// Writes `image` to `path` as PNG, under a temporary name renamed into place (a reader never
/// sees half a file).
pub fn save_png(image: &RgbImage, path: &Path) -> Result<(), IoError> {
    let mut encoded = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut encoded, image::ImageFormat::Png)
        .map_err(|e| IoError::invalid(path, format!("cannot encode the image: {e}")))?;
    crate::io::write_atomic(path, encoded.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let fine = ticks(2.31, 2.9);
        let want = [2.4, 2.5, 2.6, 2.7, 2.8, 2.9];
        assert_eq!(fine.len(), want.len(), "{fine:?}");
        assert!(
            fine.iter().zip(want).all(|(t, w)| (t - w).abs() < 1e-12),
            "{fine:?}"
        );
        let t = ticks(-3.0, 1234.0);
        assert!(t.len() >= 3 && t.len() <= 7, "{t:?}");
        assert!(t[0] >= -3.0 && *t.last().unwrap() <= 1234.0);
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(1500.0), "1500");
    }

    #[test]
    fn a_chart_draws_its_series_in_their_colour() {
        let points: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, (i as f64 / 10.0).sin()))
            .collect();
        let image = line_chart(
            "title",
            "step",
            "loss",
            &[Series {
                markers: false,
                name: "loss",
                points: &points,
                colour: ORANGE,
            }],
        );
        let orange = image.pixels().filter(|p| p.0 == ORANGE).count();
        assert!(orange > 500, "{orange} orange pixels");
    }

    /// A legend too wide for the title's row is stacked in the lower right, not over it.
    #[test]
    fn a_wide_legend_moves_below_the_title() {
        let point = [(0.0, 1.0), (0.1, 0.9)];
        let names = [
            "first series, long name",
            "second series, long name",
            "third, long",
        ];
        let series: Vec<Series> = names
            .iter()
            .zip(PALETTE)
            .map(|(name, colour)| Series {
                name,
                points: &point,
                colour,
                markers: false,
            })
            .collect();
        let image = line_chart(
            "a title of some length as ROC charts have",
            "x",
            "y",
            &series,
        );
        let lower_right = |colour: [u8; 3]| {
            (WIDTH / 2..WIDTH)
                .flat_map(|x| (HEIGHT / 2..HEIGHT).map(move |y| (x, y)))
                .filter(|&(x, y)| image.get_pixel(x, y).0 == colour)
                .count()
        };
        for colour in &PALETTE[..3] {
            assert!(lower_right(*colour) >= 16, "{colour:?}: its legend line");
        }
        let top_row = (LEFT + 400..WIDTH)
            .filter(|&x| image.get_pixel(x, 18).0 == PALETTE[0])
            .count();
        assert_eq!(top_row, 0, "nothing drawn beside the title");
    }
}
