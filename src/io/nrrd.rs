//! NRRD (`.nrrd`, and `.nhdr` with a detached data file): raw and gzip encodings, the
//! `space directions` / `space origin` geometry. The chest CTs of the sample data are NRRD.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::volume::{Format, Rescale, SampleType, Samples, Volume};
use super::{Bounded, IoError, Plan, inflate_at_most, inflate_whole, limits, read_file};

/// The sample type of a NRRD type name.
fn type_name(t: &str) -> Option<SampleType> {
    Some(match t {
        "signed char" | "int8" | "int8_t" => SampleType::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => SampleType::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => {
            SampleType::I16
        }
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => {
            SampleType::U16
        }
        "int" | "signed int" | "int32" | "int32_t" => SampleType::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => SampleType::U32,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t" => SampleType::I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => {
            SampleType::U64
        }
        "float" => SampleType::F32,
        "double" => SampleType::F64,
        _ => return None,
    })
}

/// `(x,y,z)` as three numbers.
fn vector(path: &Path, text: &str) -> Result<[f64; 3], IoError> {
    let inner = text.trim().trim_start_matches('(').trim_end_matches(')');
    let v: Vec<f64> = inner
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    v.try_into()
        .map_err(|_| IoError::invalid(path, format!("`{text}` is not a 3-vector")))
}

/// Reads a NRRD volume.
pub fn read(path: &Path) -> Result<Volume, IoError> {
    let bytes = read_file(path)?;
    let invalid = |reason: String| IoError::invalid(path, reason);
    if !bytes.starts_with(b"NRRD000") {
        return Err(invalid(
            "not a NRRD file: it does not start with NRRD000x".into(),
        ));
    }
    let header_end = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 2)
        .or_else(|| {
            bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
        });
    let (header, attached) = match header_end {
        Some(end) => (&bytes[..end], &bytes[end..]),
        None => (&bytes[..], &[][..]),
    };
    let header = String::from_utf8_lossy(header);
    let fields: HashMap<String, String> = header
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let field = |k: &str| {
        fields
            .get(k)
            .ok_or_else(|| invalid(format!("header has no `{k}` field")))
    };

    let ty_text = field("type")?;
    let ty = type_name(ty_text)
        .ok_or_else(|| IoError::unsupported(path, format!("NRRD type `{ty_text}`")))?;
    let dimension: usize = field("dimension")?
        .parse()
        .map_err(|_| invalid("bad `dimension`".into()))?;
    let sizes: Vec<u64> = field("sizes")?
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    if sizes.len() != dimension || !(2..=3).contains(&dimension) || sizes.contains(&0) {
        return Err(IoError::unsupported(
            path,
            format!("a {dimension}-D image of sizes {sizes:?}; lim reads 2-D and 3-D"),
        ));
    }
    let claimed = [sizes[0], sizes[1], sizes.get(2).copied().unwrap_or(1)];
    let count = limits::check_voxels(path, "sizes", &claimed)?;
    let dims = claimed.map(|d| d as usize);
    let big = fields.get("endian").is_some_and(|e| e == "big");

    let detached: Option<PathBuf> = fields
        .get("data file")
        .or_else(|| fields.get("datafile"))
        .map(|name| path.parent().unwrap_or(Path::new(".")).join(name));
    let detached_bytes;
    let (sources, raw): (Vec<PathBuf>, &[u8]) = match &detached {
        Some(file) => {
            detached_bytes = read_file(file)?;
            (vec![path.to_path_buf(), file.clone()], &detached_bytes)
        }
        None => (vec![path.to_path_buf()], attached),
    };
    let data_path = sources.last().unwrap().as_path();
    let samples = match field("encoding")?.as_str() {
        "raw" => Samples::decode(ty, raw, count, big),
        "gzip" | "gz" => {
            let claimed = (count as u64).saturating_mul(ty.size() as u64);
            let plan = Plan {
                range: 0..claimed,
                ty,
                big_endian: big,
            };
            let data = match inflate_whole(raw, &plan) {
                Some(whole) => whole,
                None => Bounded::Bytes {
                    bytes: inflate_at_most(data_path, raw, claimed)?,
                    skip: 0,
                },
            };
            data.into_samples(ty, count, big)
        }
        other => {
            return Err(IoError::unsupported(
                path,
                format!("NRRD encoding `{other}`"),
            ));
        }
    }
    .map_err(|reason| IoError::invalid(data_path, reason))?;

    let affine = geometry(path, &fields, dimension)?;
    Ok(Volume {
        sources,
        format: Format::Nrrd,
        dims,
        samples,
        rescale: vec![Rescale::IDENTITY],
        affine,
        padding: None,
        inverted: false,
        window: None,
        slice_sources: None,
        slice_positions: None,
        rescale_tags: None,
        notes: Vec::new(),
    })
}

/// Voxel to LPS from `space`, `space directions` and `space origin`; `spacings` (or unit
/// spacing) when there are none.
fn geometry(
    path: &Path,
    fields: &HashMap<String, String>,
    dimension: usize,
) -> Result<[[f64; 4]; 3], IoError> {
    let mut columns = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let mut origin = [0.0; 3];
    if let Some(dirs) = fields.get("space directions") {
        let parts: Vec<&str> = dirs
            .split(')')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let spatial: Vec<&str> = parts.iter().copied().filter(|p| *p != "none").collect();
        if spatial.len() != dimension {
            return Err(IoError::invalid(
                path,
                format!(
                    "`space directions` has {} vectors for {dimension} axes",
                    spatial.len()
                ),
            ));
        }
        for (c, part) in spatial.iter().enumerate() {
            columns[c] = vector(path, part)?;
        }
        if let Some(o) = fields.get("space origin") {
            origin = vector(path, o)?;
        }
        // Directions are in `space`'s axes; flip into LPS.
        let space = fields
            .get("space")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let flips = match space.as_str() {
            "left-posterior-superior" | "lps" | "" => [1.0, 1.0, 1.0],
            "right-anterior-superior" | "ras" => [-1.0, -1.0, 1.0],
            "left-anterior-superior" | "las" => [1.0, -1.0, 1.0],
            other => return Err(IoError::unsupported(path, format!("NRRD space `{other}`"))),
        };
        for col in &mut columns {
            for (v, f) in col.iter_mut().zip(flips) {
                *v *= f;
            }
        }
        for (v, f) in origin.iter_mut().zip(flips) {
            *v *= f;
        }
    } else if let Some(spacings) = fields.get("spacings") {
        for (c, s) in spacings.split_whitespace().take(3).enumerate() {
            columns[c][c] = s.parse().unwrap_or(1.0);
        }
    }
    Ok(std::array::from_fn(|r| {
        [columns[0][r], columns[1][r], columns[2][r], origin[r]]
    }))
}
