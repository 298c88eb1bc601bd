//! Training data: slice images found on disk ([`find_slices`]), decoded to grey
//! ([`GreyImage`]), and served in shuffled batches by a prefetching [`Loader`].

mod loader;
mod slices;

pub use loader::{Batch, Loader, LoaderOptions, epoch_order};
pub use slices::{Skipped, SliceList, find_slices, is_image};

use std::path::Path;

use crate::io::IoError;

/// Decodes a PNG or JPEG file (by its content, whatever its name) that has pixels. Its
/// dimensions are checked against [`crate::io::limits::max_voxels`] before any pixel is
/// allocated.
pub fn decode_image(path: &Path) -> Result<image::DynamicImage, IoError> {
    decode_image_bytes(path, &crate::io::read_file(path)?)
}

/// [`decode_image`] of a file's bytes, read already; `path` names it in errors.
pub fn decode_image_bytes(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage, IoError> {
    use image::ImageDecoder;
    let cannot =
        |e: image::ImageError| IoError::invalid(path, format!("cannot decode the image: {e}"));
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| IoError::io(path, e))?;
    // The voxel limit replaces the `image` crate's own (512 MiB), never a tighter one.
    reader.no_limits();
    let decoder = reader.into_decoder().map_err(cannot)?;
    let (width, height) = decoder.dimensions();
    crate::io::limits::check_voxels(
        path,
        "the image's width and height",
        &[width as u64, height as u64],
    )?;
    if width == 0 || height == 0 {
        return Err(IoError::invalid(path, "the image is empty"));
    }
    image::DynamicImage::from_decoder(decoder).map_err(cannot)
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
        Ok(GreyImage::from_image(decode_image(path)?))
    }

    /// A decoded image's grey values, as [`GreyImage::open`] makes them.
    pub fn from_image(image: image::DynamicImage) -> GreyImage {
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
        GreyImage {
            width,
            height,
            pixels,
        }
    }
}
