//! Training data: slice images found on disk ([`find_slices`]), decoded to grey
//! ([`GreyImage`]), and served in shuffled batches by a prefetching [`Loader`].

mod loader;
mod slices;

pub use loader::{Batch, Loader, LoaderOptions, epoch_order};
pub use slices::{Skipped, SliceList, find_slices, is_image};

use std::path::Path;

use crate::io::IoError;

/// Decodes a PNG or JPEG file (by its content, whatever its name) that has pixels.
pub fn decode_image(path: &Path) -> Result<image::DynamicImage, IoError> {
    crate::io::require_regular(path)?;
    let image = image::ImageReader::open(path)
        .map_err(|e| IoError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| IoError::io(path, e))?
        .decode()
        .map_err(|e| IoError::invalid(path, format!("cannot decode the image: {e}")))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(IoError::invalid(path, "the image is empty"));
    }
    Ok(image)
}

/// A grey image as 16-bit values, row-major: 8-bit images are scaled by 257, so that
/// `value / 65535` is the pixel in [0, 1] either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreyImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u16>,
}

impl GreyImage {
    /// Decodes a PNG or JPEG file. Colour images become their luma (ITU-R 601-2, as
    /// Pillow's `convert("L")`); alpha is dropped.
    pub fn open(path: &Path) -> Result<GreyImage, IoError> {
        let image = decode_image(path)?;
        let (width, height) = (image.width() as usize, image.height() as usize);
        use image::DynamicImage::*;
        let pixels: Vec<u16> = match image {
            ImageLuma8(g) => g.into_raw().into_iter().map(|v| v as u16 * 257).collect(),
            ImageLumaA8(g) => g.pixels().map(|p| p.0[0] as u16 * 257).collect(),
            ImageLuma16(g) => g.into_raw(),
            ImageLumaA16(g) => g.pixels().map(|p| p.0[0]).collect(),
            other => other
                .to_rgb16()
                .pixels()
                .map(|p| {
                    let [r, g, b] = p.0.map(|c| c as f64);
                    (0.299 * r + 0.587 * g + 0.114 * b).round() as u16
                })
                .collect(),
        };
        Ok(GreyImage {
            width,
            height,
            pixels,
        })
    }
}
