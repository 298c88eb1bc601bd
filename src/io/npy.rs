//! NumPy's `.npy` arrays (format 1.0 to 3.0) and `.npz` archives of them (stored or deflated,
//! as `np.savez` and `np.savez_compressed` write them): how MedMNIST ships its data sets, and
//! how `lim embed` hands its features to Python.

use std::collections::BTreeMap;
use std::path::Path;

use super::IoError;

/// An array's elements, widened to one type per kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Elements {
    /// `uint8` (and `bool`): image pixels.
    U8(Vec<u8>),
    /// `uint16`: 16-bit image pixels.
    U16(Vec<u16>),
    /// Every other integer type, signed or not: labels.
    Int(Vec<i64>),
    /// `float16`, `float32`, `float64`.
    Float(Vec<f64>),
}

impl Elements {
    pub fn len(&self) -> usize {
        match self {
            Elements::U8(v) => v.len(),
            Elements::U16(v) => v.len(),
            Elements::Int(v) => v.len(),
            Elements::Float(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One array: C-order elements and their shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub elements: Elements,
}

/// Reads the `.npy` file at `path`.
pub fn read_npy(path: &Path) -> Result<Array, IoError> {
    super::require_regular(path)?;
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
    parse_npy(&bytes).map_err(|why| IoError::invalid(path, why))
}

/// Reads every array of the `.npz` archive at `path`, by name without `.npy`.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, Array>, IoError> {
    super::require_regular(path)?;
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| IoError::invalid(path, format!("not an .npz (zip) archive: {e}")))?;
    let mut arrays = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| IoError::invalid(path, format!("member {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| IoError::invalid(path, format!("member {i}: {e}")))?
            .to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let bytes = super::read_member(path, &name, &mut entry)?;
        let array =
            parse_npy(&bytes).map_err(|why| IoError::invalid(path, format!("{name}: {why}")))?;
        arrays.insert(key.to_string(), array);
    }
    Ok(arrays)
}

/// The array in `bytes`, a whole `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(format!(".npy format version {v} is not 1, 2 or 3")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("the header runs past the end of the file")?;
    let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
    let descr = header_value(header, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if header_value(header, "fortran_order")? != "False" {
        return Err("Fortran-order arrays are not supported (save with C order)".into());
    }
    let shape = parse_shape(&header_value(header, "shape")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("the shape's element count overflows")?;
    let data = &bytes[start + header_len..];
    let elements = decode(descr, data, count)?;
    Ok(Array { shape, elements })
}

/// The text of `key`'s value in the header's Python dict literal.
fn header_value(header: &str, key: &str) -> Result<String, String> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))
        .ok_or_else(|| format!("the header has no `{key}`"))?;
    let rest = header[at..]
        .trim_start()
        .strip_prefix(':')
        .ok_or("malformed header")?;
    let rest = rest.trim_start();
    // A tuple runs to its closing parenthesis; anything else to the next comma or brace.
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .ok_or("malformed header")?;
    Ok(rest[..end].trim().to_string())
}

fn parse_shape(text: &str) -> Result<Vec<usize>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("shape `{text}` is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.trim_end_matches('L')
                .parse()
                .map_err(|_| format!("shape `{text}`"))
        })
        .collect()
}

/// Decodes `count` elements of type `descr` (e.g. `<f4`, `|u1`) from `data`.
fn decode(descr: &str, data: &[u8], count: usize) -> Result<Elements, String> {
    let mut chars = descr.chars();
    let order = chars.next().ok_or("empty dtype")?;
    let kind = chars.next().ok_or("empty dtype")?;
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("dtype `{descr}` is not supported"))?;
    let big = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(format!("dtype `{descr}` is not supported")),
    };
    let known = matches!(
        (kind, size),
        ('u' | 'b', 1) | ('u', 2 | 4 | 8) | ('i', 1 | 2 | 4 | 8) | ('f', 2 | 4 | 8)
    );
    if !known {
        return Err(format!("dtype `{descr}` is not supported"));
    }
    let need = count.checked_mul(size).ok_or("the array is too large")?;
    if data.len() < need {
        return Err(format!(
            "{} bytes of data, but the shape and dtype `{descr}` need {need}",
            data.len()
        ));
    }
    let words = data[..need].chunks_exact(size).map(|w| {
        let mut bytes = [0u8; 8];
        bytes[..size].copy_from_slice(w);
        if big {
            bytes[..size].reverse();
        }
        u64::from_le_bytes(bytes)
    });
    let sign_extend = |w: u64| {
        let shift = 64 - 8 * size as u32;
        ((w << shift) as i64) >> shift
    };
    Ok(match (kind, size) {
        ('u' | 'b', 1) => Elements::U8(words.map(|w| w as u8).collect()),
        ('u', 2) => Elements::U16(words.map(|w| w as u16).collect()),
        ('u', 4) => Elements::Int(words.map(|w| w as i64).collect()),
        ('u', 8) => Elements::Int(
            words
                .map(|w| i64::try_from(w).map_err(|_| format!("uint64 value {w} is too large")))
                .collect::<Result<_, _>>()?,
        ),
        ('i', 1 | 2 | 4 | 8) => Elements::Int(words.map(sign_extend).collect()),
        ('f', 2) => Elements::Float(
            words
                .map(|w| half::f16::from_bits(w as u16).to_f64())
                .collect(),
        ),
        ('f', 4) => Elements::Float(words.map(|w| f32::from_bits(w as u32) as f64).collect()),
        ('f', 8) => Elements::Float(words.map(f64::from_bits).collect()),
        _ => return Err(format!("dtype `{descr}` is not supported")),
    })
}

/// Writes a little-endian float32 `.npy` file (format 1.0, C order) of shape `[rows, cols]`,
/// atomically.
pub fn write_f32(path: &Path, rows: usize, cols: usize, values: &[f32]) -> Result<(), IoError> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut bytes = Vec::with_capacity(total + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    // '<f4' whatever the host's byte order.
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    super::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        with_header(
            &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"),
            data,
        )
    }

    fn with_header(dict: &str, data: &[u8]) -> Vec<u8> {
        let header = format!("{dict}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn decodes_each_kind_and_byte_order() {
        let a = parse_npy(&npy("|u1", "(2, 2)", &[1, 2, 3, 4])).unwrap();
        assert_eq!(
            (a.shape, a.elements),
            (vec![2, 2], Elements::U8(vec![1, 2, 3, 4]))
        );
        let a = parse_npy(&npy(
            "<i8",
            "(2,)",
            &[
                255, 255, 255, 255, 255, 255, 255, 255, 7, 0, 0, 0, 0, 0, 0, 0,
            ],
        ))
        .unwrap();
        assert_eq!(a.elements, Elements::Int(vec![-1, 7]));
        let a = parse_npy(&npy(">i2", "(1,)", &[0xff, 0xfe])).unwrap();
        assert_eq!(a.elements, Elements::Int(vec![-2]));
        let a = parse_npy(&npy("<f4", "()", &1.5f32.to_le_bytes())).unwrap();
        assert_eq!((a.shape, a.elements), (vec![], Elements::Float(vec![1.5])));
        let a = parse_npy(&npy("<u2", "(1, 1)", &[0x34, 0x12])).unwrap();
        assert_eq!(a.elements, Elements::U16(vec![0x1234]));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let short = parse_npy(&npy("<f4", "(3,)", &[0; 8])).unwrap_err();
        assert!(short.contains("8 bytes of data"), "{short}");
        let odd = parse_npy(&npy("<c8", "(1,)", &[0; 8])).unwrap_err();
        assert!(odd.contains("`<c8` is not supported"), "{odd}");
        let fortran = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(parse_npy(&fortran).unwrap_err().contains("Fortran"));
        assert!(
            parse_npy(b"PK\x03\x04 not npy")
                .unwrap_err()
                .contains("magic")
        );
    }

    #[test]
    fn writes_what_it_reads() {
        let path = std::env::temp_dir().join(format!("lim-npy-{}.npy", std::process::id()));
        write_f32(&path, 2, 3, &[1., 2., 3., 4., 5., -6.]).unwrap();
        let a = read_npy(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.elements, Elements::Float(vec![1., 2., 3., 4., 5., -6.]));
    }
}
