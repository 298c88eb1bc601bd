//! Contact sheets: one PNG per volume, its slices as thumbnails in order, kept ones framed
//! green and dropped ones red, for a look at what a reduction did.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::run::Record;
use crate::hash::pillow::{self, Luma8};
use crate::io::IoError;

const THUMB: usize = 96;
const BORDER: usize = 3;
const COLUMNS: usize = 10;

/// Writes `output/sheets/<volume>.png`.
pub fn write(
    output: &Path,
    volume: &str,
    images: &[&Luma8],
    records: &[Record],
) -> Result<(), IoError> {
    let cell = THUMB + 2 * BORDER;
    let rows = images.len().div_ceil(COLUMNS).max(1);
    let mut sheet = RgbImage::from_pixel(
        (COLUMNS * cell) as u32,
        (rows * cell) as u32,
        Rgb([32, 32, 32]),
    );
    for (n, (image, record)) in images.iter().zip(records).enumerate() {
        let (x0, y0) = ((n % COLUMNS) * cell, (n / COLUMNS) * cell);
        let frame = if record.kept {
            Rgb([40, 200, 70])
        } else {
            Rgb([220, 50, 50])
        };
        for y in 0..cell {
            for x in 0..cell {
                sheet.put_pixel((x0 + x) as u32, (y0 + y) as u32, frame);
            }
        }
        let thumb = pillow::resize(image, THUMB, THUMB);
        for y in 0..THUMB {
            for x in 0..THUMB {
                let v = thumb.pixels[y * THUMB + x];
                sheet.put_pixel(
                    (x0 + BORDER + x) as u32,
                    (y0 + BORDER + y) as u32,
                    Rgb([v, v, v]),
                );
            }
        }
    }
    let dir = output.join("sheets");
    std::fs::create_dir_all(&dir).map_err(|e| IoError::io(&dir, e))?;
    let path = dir.join(format!("{}.png", crate::io::names::safe_name(volume)));
    crate::plot::save_png(&sheet, &path)
}
