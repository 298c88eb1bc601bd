//! The image sizes that compressed DICOM pixel data declare inside their codestreams, checked
//! before a decoder sees them. The DICOM header's Rows and Columns are checked against the
//! voxel limit, but the JPEG 2000 and JPEG decoders size their buffers (and, for JPEG 2000,
//! their tiles) from the codestream's own header: a 3 KB file whose codestream claimed far
//! more than its 100 x 100 header made openjp2 allocate 5 GB before failing (a fuzz find).

use std::path::Path;

use super::IoError;

/// What a codestream says it holds.
#[derive(Debug, PartialEq, Eq)]
struct Declared {
    width: u64,
    height: u64,
    /// Tiles (JPEG 2000); 1 for JPEG.
    tiles: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

/// A JPEG 2000 codestream's SIZ marker segment, which follows its SOC marker; in a JP2 file,
/// the codestream is the `jp2c` box's.
fn jpeg2000(fragment: &[u8]) -> Option<Declared> {
    let stream = if fragment.starts_with(&[0xFF, 0x4F]) {
        fragment
    } else {
        let at = fragment.windows(4).position(|w| w == b"jp2c")?;
        &fragment[at + 4..]
    };
    if stream.get(0..4)? != [0xFF, 0x4F, 0xFF, 0x51] {
        return None;
    }
    // After SOC and the SIZ marker: Lsiz, Rsiz, then the grid and the tiling.
    let siz = 4;
    let [x, y, x0, y0, tile_w, tile_h, tile_x0, tile_y0] =
        std::array::from_fn(|i| u32_at(stream, siz + 4 + 4 * i));
    let (x, y, x0, y0) = (x?, y?, x0?, y0?);
    let (tile_w, tile_h, tile_x0, tile_y0) = (tile_w?, tile_h?, tile_x0?, tile_y0?);
    let tiles = |end: u64, origin: u64, size: u64| end.saturating_sub(origin).div_ceil(size.max(1));
    Some(Declared {
        width: x.saturating_sub(x0),
        height: y.saturating_sub(y0),
        tiles: tiles(x, tile_x0, tile_w).saturating_mul(tiles(y, tile_y0, tile_h)),
    })
}

/// A JPEG stream's frame header (SOF0 to SOF15, not DHT, JPG or DAC).
fn jpeg(fragment: &[u8]) -> Option<Declared> {
    if !fragment.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    loop {
        if *fragment.get(at)? != 0xFF {
            return None;
        }
        let marker = *fragment.get(at + 1)?;
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            return Some(Declared {
                width: u16_at(fragment, at + 7)?,
                height: u16_at(fragment, at + 5)?,
                tiles: 1,
            });
        }
        at += 2 + u16_at(fragment, at + 2)? as usize;
    }
}

/// Refuses pixel data whose fragments declare a larger image, or more JPEG 2000 tiles, than
/// the DICOM header's `columns` x `rows` (a real file's codestream describes its frame).
pub fn check(path: &Path, fragments: &[Vec<u8>], columns: u32, rows: u32) -> Result<(), IoError> {
    let pixels = columns as u64 * rows as u64;
    for fragment in fragments {
        let Some(declared) = jpeg2000(fragment).or_else(|| jpeg(fragment)) else {
            continue;
        };
        if declared.width.saturating_mul(declared.height) > pixels || declared.tiles > pixels {
            return Err(IoError::invalid(
                path,
                format!(
                    "cannot decode pixel data: its codestream declares a {} x {} image in {} \
                     tiles, the header {columns} x {rows}",
                    declared.width, declared.height, declared.tiles
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_declared_sizes() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [612u32, 400, 100, 0, 256, 256, 0, 0] {
            siz.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            jpeg2000(&siz),
            Some(Declared {
                width: 512,
                height: 400,
                tiles: 6
            })
        );
        let sof = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0x01, 0x2C, 0x02, 0x00, 1,
        ];
        assert_eq!(
            jpeg(&sof),
            Some(Declared {
                width: 512,
                height: 300,
                tiles: 1
            })
        );
        let path = Path::new("x.dcm");
        assert!(check(path, &[siz.clone()], 512, 400).is_ok());
        let err = check(path, &[siz], 100, 100).unwrap_err().to_string();
        assert!(
            err.contains("declares a 512 x 400 image in 6 tiles"),
            "{err}"
        );
        assert!(check(path, &[sof.to_vec()], 512, 300).is_ok());
        assert!(check(path, &[b"not a codestream".to_vec()], 1, 1).is_ok());
    }
}
