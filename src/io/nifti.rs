//! NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`, `.hdr` + `.img`, either byte order), read with
//! our own header parser: the nifti crate reads neither NIfTI-2 nor every datatype.

use std::path::{Path, PathBuf};

use super::volume::{Format, Rescale, SampleType, Samples, Volume};
use super::{IoError, Plan, limits, read_bounded};

/// Little- or big-endian field access into a header.
struct Fields<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn get<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b: [u8; N] = self.bytes[at..at + N]
            .try_into()
            .expect("header length checked");
        if self.big {
            b.reverse();
        }
        b
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.get(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.get(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.get(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.get(at)) as f64
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.get(at))
    }
}

/// What the two header versions have in common, widened to 64 bits.
struct Header {
    dim: [i64; 8],
    datatype: i16,
    pixdim: [f64; 8],
    vox_offset: f64,
    scl_slope: f64,
    scl_inter: f64,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
    /// The image data follows the header in the same file (`n+1` / `n+2`).
    single_file: bool,
    big_endian: bool,
}

/// The size of a NIfTI-2 header, the longer of the two.
const NIFTI2_HEADER: usize = 540;

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, IoError> {
    let invalid = |reason: String| IoError::invalid(path, reason);
    if bytes.len() < 348 {
        return Err(invalid(format!(
            "not a NIfTI file: {} bytes, shorter than a NIfTI-1 header (348)",
            bytes.len()
        )));
    }
    let size_le = i32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let size_be = i32::from_be_bytes(bytes[0..4].try_into().unwrap());
    let (version, big) = match (size_le, size_be) {
        (348, _) => (1, false),
        (_, 348) => (1, true),
        (540, _) => (2, false),
        (_, 540) => (2, true),
        _ => {
            return Err(invalid(format!(
                "not a NIfTI file: header size field is {size_le}, not 348 or 540"
            )));
        }
    };
    let f = Fields { bytes, big };
    if version == 1 {
        let magic = &bytes[344..348];
        let single_file = match magic {
            b"n+1\0" => true,
            b"ni1\0" => false,
            _ => {
                return Err(invalid(
                    "an Analyze 7.5 header without the NIfTI-1 magic; convert it to NIfTI".into(),
                ));
            }
        };
        Ok(Header {
            dim: std::array::from_fn(|n| f.i16(40 + 2 * n) as i64),
            datatype: f.i16(70),
            pixdim: std::array::from_fn(|n| f.f32(76 + 4 * n)),
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            qform_code: f.i16(252) as i32,
            sform_code: f.i16(254) as i32,
            quatern: std::array::from_fn(|n| f.f32(256 + 4 * n)),
            qoffset: std::array::from_fn(|n| f.f32(268 + 4 * n)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
            single_file,
            big_endian: big,
        })
    } else {
        if bytes.len() < 540 {
            return Err(invalid(format!(
                "truncated NIfTI-2 header: {} of 540 bytes",
                bytes.len()
            )));
        }
        let single_file = match &bytes[4..7] {
            b"n+2" => true,
            b"ni2" => false,
            _ => return Err(invalid("NIfTI-2 header without its magic".into())),
        };
        Ok(Header {
            dim: std::array::from_fn(|n| f.i64(16 + 8 * n)),
            datatype: f.i16(12),
            pixdim: std::array::from_fn(|n| f.f64(104 + 8 * n)),
            vox_offset: f.i64(168) as f64,
            scl_slope: f.f64(176),
            scl_inter: f.f64(184),
            qform_code: f.i32(344),
            sform_code: f.i32(348),
            quatern: std::array::from_fn(|n| f.f64(352 + 8 * n)),
            qoffset: std::array::from_fn(|n| f.f64(376 + 8 * n)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c))),
            single_file,
            big_endian: big,
        })
    }
}

/// Voxel to RAS, as nibabel chooses it: the sform if set, else the qform, else the pixdims
/// (with x flipped, Analyze's radiological convention).
fn ras_affine(h: &Header) -> [[f64; 4]; 3] {
    if h.sform_code > 0 {
        return h.srow;
    }
    let [dx, dy, dz] = [h.pixdim[1], h.pixdim[2], h.pixdim[3]];
    if h.qform_code > 0 {
        let [b, c, d] = h.quatern;
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let scale = [dx, dy, dz * qfac];
        return std::array::from_fn(|row| {
            let mut out = [0.0; 4];
            for col in 0..3 {
                out[col] = r[row][col] * scale[col];
            }
            out[3] = h.qoffset[row];
            out
        });
    }
    let dims = [h.dim[1], h.dim[2], h.dim[3]].map(|d| d.max(1) as f64);
    let origin = [
        (dims[0] - 1.0) / 2.0 * dx,
        -(dims[1] - 1.0) / 2.0 * dy,
        -(dims[2] - 1.0) / 2.0 * dz,
    ];
    [
        [-dx, 0.0, 0.0, origin[0]],
        [0.0, dy, 0.0, origin[1]],
        [0.0, 0.0, dz, origin[2]],
    ]
}

/// RAS to LPS: negate x and y.
fn lps(ras: [[f64; 4]; 3]) -> [[f64; 4]; 3] {
    [ras[0].map(|v| -v), ras[1].map(|v| -v), ras[2]]
}

/// The sample type of a NIfTI datatype code.
/// NIfTI's datatype code of a sample type.
fn datatype(ty: SampleType) -> i16 {
    match ty {
        SampleType::U8 => 2,
        SampleType::I16 => 4,
        SampleType::I32 => 8,
        SampleType::F32 => 16,
        SampleType::F64 => 64,
        SampleType::I8 => 256,
        SampleType::U16 => 512,
        SampleType::U32 => 768,
        SampleType::I64 => 1024,
        SampleType::U64 => 1280,
    }
}

/// Writes `samples` (`dims`, `i` fastest) as a little-endian single-file NIfTI-1, gzipped (at
/// level 1, as nibabel does) when `path` ends in `.gz`: 1 mm voxels, the identity affine (as
/// sform), no rescale. Written atomically.
pub fn write(path: &Path, dims: [usize; 3], samples: &Samples) -> Result<(), IoError> {
    let too_big = || IoError::invalid(path, format!("{dims:?} does not fit a NIfTI-1 header"));
    let mut header = vec![0u8; 352];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &348i32.to_le_bytes());
    let mut dim = [1i16; 8];
    dim[0] = 3;
    for (d, &n) in dim[1..4].iter_mut().zip(&dims) {
        *d = i16::try_from(n).map_err(|_| too_big())?;
    }
    for (i, d) in dim.iter().enumerate() {
        put(40 + 2 * i, &d.to_le_bytes());
    }
    let ty = samples.sample_type();
    put(70, &datatype(ty).to_le_bytes());
    put(72, &(8 * ty.size() as i16).to_le_bytes());
    for i in 0..4 {
        put(76 + 4 * i, &1f32.to_le_bytes());
    }
    put(108, &352f32.to_le_bytes());
    put(254, &1i16.to_le_bytes());
    for (row, at) in [280, 296, 312].into_iter().enumerate() {
        put(at + 4 * row, &1f32.to_le_bytes());
    }
    put(344, b"n+1\0");
    let mut bytes = header;
    bytes.extend(samples.to_le_bytes());
    if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&bytes)
            .and_then(|()| z.flush())
            .map_err(|e| IoError::io(path, e))?;
        bytes = z.finish().map_err(|e| IoError::io(path, e))?;
    }
    super::write_atomic(path, &bytes)
}

fn sample_type(path: &Path, datatype: i16) -> Result<SampleType, IoError> {
    Ok(match datatype {
        2 => SampleType::U8,
        4 => SampleType::I16,
        8 => SampleType::I32,
        16 => SampleType::F32,
        64 => SampleType::F64,
        256 => SampleType::I8,
        512 => SampleType::U16,
        768 => SampleType::U32,
        1024 => SampleType::I64,
        1280 => SampleType::U64,
        other => {
            let name = match other {
                1 => "binary",
                32 => "complex64",
                128 => "RGB24",
                1536 => "float128",
                1792 => "complex128",
                2048 => "complex256",
                2304 => "RGBA32",
                _ => "unknown",
            };
            return Err(IoError::unsupported(
                path,
                format!("NIfTI datatype {other} ({name})"),
            ));
        }
    })
}

/// The image file of a `.hdr` header: `.img` or `.img.gz` beside it.
fn image_file(header: &Path) -> Result<PathBuf, IoError> {
    let name = header
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".hdr.gz")
        .or_else(|| name.strip_suffix(".hdr"))
        .unwrap_or(name);
    ["img", "img.gz"]
        .iter()
        .map(|ext| header.with_file_name(format!("{stem}.{ext}")))
        .find(|p| p.exists())
        .ok_or_else(|| IoError::invalid(header, format!("header only: no {stem}.img beside it")))
}

/// The voxels a header describes: its 3-D shape, their count (within
/// [`limits::max_voxels`]) and their type.
struct Layout {
    shape: [usize; 3],
    count: usize,
    ty: SampleType,
}

fn layout(path: &Path, h: &Header) -> Result<Layout, IoError> {
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(IoError::invalid(
            path,
            format!("dim[0] is {ndim}, not 1 to 7"),
        ));
    }
    let dims: Vec<i64> = (1..=ndim as usize).map(|n| h.dim[n]).collect();
    if dims.iter().any(|&d| d < 1) {
        return Err(IoError::invalid(
            path,
            format!("image dimensions {dims:?} are not all positive"),
        ));
    }
    if let Some(extra) = dims.get(3..).filter(|d| d.iter().any(|&n| n > 1)) {
        return Err(IoError::unsupported(
            path,
            format!(
                "a {ndim}-D image ({} volumes of {:?}); lim reads 3-D volumes",
                extra.iter().fold(1i64, |n, &d| n.saturating_mul(d)),
                &dims[..3]
            ),
        ));
    }
    let size = |n: usize| dims.get(n).copied().unwrap_or(1) as u64;
    let claimed = [size(0), size(1), size(2)];
    let count = limits::check_voxels(path, "image dimensions", &claimed)?;
    Ok(Layout {
        shape: claimed.map(|d| d as usize),
        count,
        ty: sample_type(path, h.datatype)?,
    })
}

/// Reads a NIfTI volume. `path` is the `.nii`/`.nii.gz` file or the `.hdr` of a pair. Only
/// the bytes the header describes are read (or inflated), after its claim is checked.
pub fn read(path: &Path) -> Result<Volume, IoError> {
    let mut planned = None;
    let file = read_bounded(path, NIFTI2_HEADER, |head| {
        let h = parse_header(path, head)?;
        let l = layout(path, &h)?;
        let bytes = (l.count as u64).saturating_mul(l.ty.size() as u64);
        let offset = h.vox_offset.max(0.0) as u64;
        let range = if h.single_file {
            offset..offset.saturating_add(bytes)
        } else {
            0..0
        };
        let plan = Plan {
            range,
            ty: l.ty,
            big_endian: h.big_endian,
        };
        planned = Some((h, l, bytes));
        Ok(plan)
    })?;
    let (h, Layout { shape, count, ty }, bytes) = planned.expect("planned when read");
    let (sources, data) = if h.single_file {
        (vec![path.to_path_buf()], file)
    } else {
        let img = image_file(path)?;
        let image = read_bounded(&img, 0, |_| {
            Ok(Plan {
                range: 0..bytes,
                ty,
                big_endian: h.big_endian,
            })
        })?;
        (vec![path.to_path_buf(), img], image)
    };
    let samples = data
        .into_samples(ty, count, h.big_endian)
        .map_err(|reason| IoError::invalid(sources.last().expect("one or two sources"), reason))?;
    // nibabel ignores a zero or non-finite slope, and a non-finite intercept.
    let rescale = if h.scl_slope == 0.0 || !h.scl_slope.is_finite() {
        Rescale::IDENTITY
    } else {
        Rescale {
            slope: h.scl_slope,
            inter: if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        }
    };
    Ok(Volume {
        sources,
        format: Format::Nifti,
        dims: shape,
        samples,
        rescale: vec![rescale],
        affine: lps(ras_affine(&h)),
        padding: None,
        inverted: false,
        window: None,
        slice_sources: None,
        slice_positions: None,
        rescale_tags: None,
        notes: Vec::new(),
    })
}
