//! A 3-D image as read from disk: stored samples in their own type, the rescale that turns
//! them into physical values (HU for CT), and the geometry that places voxels in the patient.

use std::path::PathBuf;

/// Stored voxel values, `i` fastest, then `j`, then `k`.
#[derive(Clone, Debug)]
pub enum Samples {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The type of stored samples, as headers name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl SampleType {
    /// Bytes per sample.
    pub fn size(self) -> usize {
        match self {
            SampleType::U8 | SampleType::I8 => 1,
            SampleType::U16 | SampleType::I16 => 2,
            SampleType::U32 | SampleType::I32 | SampleType::F32 => 4,
            SampleType::U64 | SampleType::I64 | SampleType::F64 => 8,
        }
    }
}

impl Samples {
    /// `count` samples of `ty` from raw bytes in little- or big-endian order, or how many
    /// bytes were missing.
    pub fn decode(
        ty: SampleType,
        data: &[u8],
        count: usize,
        big_endian: bool,
    ) -> Result<Samples, String> {
        macro_rules! decode {
            ($variant:ident, $t:ty) => {{
                const SIZE: usize = std::mem::size_of::<$t>();
                let Some(need) = count.checked_mul(SIZE) else {
                    return Err(format!("{count} samples of {SIZE} bytes overflow memory"));
                };
                if data.len() < need {
                    return Err(format!(
                        "truncated image data: {} of {need} bytes",
                        data.len()
                    ));
                }
                let word = |c: &[u8]| -> [u8; SIZE] { c.try_into().expect("chunks of SIZE") };
                Samples::$variant(if big_endian == cfg!(target_endian = "big") {
                    // The machine's own byte order: one copy, as fast as memcpy.
                    bytemuck::pod_collect_to_vec(&data[..need])
                } else if big_endian {
                    data[..need]
                        .chunks_exact(SIZE)
                        .map(|c| <$t>::from_be_bytes(word(c)))
                        .collect()
                } else {
                    data[..need]
                        .chunks_exact(SIZE)
                        .map(|c| <$t>::from_le_bytes(word(c)))
                        .collect()
                })
            }};
        }
        Ok(match ty {
            SampleType::U8 => decode!(U8, u8),
            SampleType::I8 => decode!(I8, i8),
            SampleType::U16 => decode!(U16, u16),
            SampleType::I16 => decode!(I16, i16),
            SampleType::U32 => decode!(U32, u32),
            SampleType::I32 => decode!(I32, i32),
            SampleType::U64 => decode!(U64, u64),
            SampleType::I64 => decode!(I64, i64),
            SampleType::F32 => decode!(F32, f32),
            SampleType::F64 => decode!(F64, f64),
        })
    }
}

/// A stored sample type.
pub trait Sample: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
}

macro_rules! sample {
    ($($t:ty),*) => { $(impl Sample for $t { fn to_f64(self) -> f64 { self as f64 } })* };
}
sample!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// Calls `$body` with `$v` bound to the typed vector inside `$samples`.
macro_rules! with_samples {
    ($samples:expr, $v:ident => $body:expr) => {
        match $samples {
            Samples::U8($v) => $body,
            Samples::I8($v) => $body,
            Samples::U16($v) => $body,
            Samples::I16($v) => $body,
            Samples::U32($v) => $body,
            Samples::I32($v) => $body,
            Samples::U64($v) => $body,
            Samples::I64($v) => $body,
            Samples::F32($v) => $body,
            Samples::F64($v) => $body,
        }
    };
}

impl Samples {
    pub fn len(&self) -> usize {
        with_samples!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `out[n] = value at index[n]`, as f64.
    pub fn gather(&self, index: impl Iterator<Item = usize>, out: &mut Vec<f64>) {
        out.clear();
        with_samples!(self, v => out.extend(index.map(|i| v[i].to_f64())))
    }

    /// Every sample's little-endian bytes, in order.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        with_samples!(self, v => v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    pub fn sample_type(&self) -> SampleType {
        match self {
            Samples::U8(_) => SampleType::U8,
            Samples::I8(_) => SampleType::I8,
            Samples::U16(_) => SampleType::U16,
            Samples::I16(_) => SampleType::I16,
            Samples::U32(_) => SampleType::U32,
            Samples::I32(_) => SampleType::I32,
            Samples::U64(_) => SampleType::U64,
            Samples::I64(_) => SampleType::I64,
            Samples::F32(_) => SampleType::F32,
            Samples::F64(_) => SampleType::F64,
        }
    }

    /// The stored value at one index, as f64.
    pub fn get(&self, i: usize) -> f64 {
        with_samples!(self, v => v[i].to_f64())
    }

    /// `count` zeros of `ty`. A fresh allocation of zeros costs no writes: the system hands
    /// out zeroed pages.
    pub(crate) fn zeroed(ty: SampleType, count: usize) -> Samples {
        match ty {
            SampleType::U8 => Samples::U8(bytemuck::zeroed_vec(count)),
            SampleType::I8 => Samples::I8(bytemuck::zeroed_vec(count)),
            SampleType::U16 => Samples::U16(bytemuck::zeroed_vec(count)),
            SampleType::I16 => Samples::I16(bytemuck::zeroed_vec(count)),
            SampleType::U32 => Samples::U32(bytemuck::zeroed_vec(count)),
            SampleType::I32 => Samples::I32(bytemuck::zeroed_vec(count)),
            SampleType::U64 => Samples::U64(bytemuck::zeroed_vec(count)),
            SampleType::I64 => Samples::I64(bytemuck::zeroed_vec(count)),
            SampleType::F32 => Samples::F32(bytemuck::zeroed_vec(count)),
            SampleType::F64 => Samples::F64(bytemuck::zeroed_vec(count)),
        }
    }

    /// The samples' bytes, in the machine's byte order.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        with_samples!(self, v => bytemuck::cast_slice_mut(v))
    }

    /// Drops the first `n` samples, moving the rest to the front in place.
    pub(crate) fn drop_front(&mut self, n: usize) {
        with_samples!(self, v => drop(v.drain(..n)))
    }
}

/// `physical = stored * slope + inter`, in f64 with two roundings (as numpy computes it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rescale {
    pub slope: f64,
    pub inter: f64,
}

impl Rescale {
    pub const IDENTITY: Rescale = Rescale {
        slope: 1.0,
        inter: 0.0,
    };

    pub fn apply(self, stored: f64) -> f64 {
        if self == Self::IDENTITY {
            stored
        } else {
            stored * self.slope + self.inter
        }
    }
}

/// The file format a volume came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nifti,
    Dicom,
    Nrrd,
}

/// A volume of `dims[0] x dims[1] x dims[2]` voxels along its `i`, `j`, `k` axes.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Files the volume was read from (a DICOM series has one per slice).
    pub sources: Vec<PathBuf>,
    pub format: Format,
    pub dims: [usize; 3],
    pub samples: Samples,
    /// One per `k` slice, or one for all.
    pub rescale: Vec<Rescale>,
    /// Voxel `(i, j, k)` to patient coordinates in mm, LPS (DICOM's convention):
    /// `p = affine · (i, j, k, 1)`.
    pub affine: [[f64; 4]; 3],
    /// A stored value that marks voxels outside the scanned field (DICOM PixelPaddingValue).
    pub padding: Option<f64>,
    /// Whether low values are bright (DICOM MONOCHROME1).
    pub inverted: bool,
    /// The file's own display window (DICOM WindowCenter, WindowWidth), if it has one.
    pub window: Option<(f64, f64)>,
    /// For each `k` slice, the index in `sources` it came from (DICOM), if not all from one file.
    pub slice_sources: Option<Vec<usize>>,
    /// For each `k` slice, its own ImagePositionPatient (DICOM), where the file gives one.
    pub slice_positions: Option<Vec<Option<[f64; 3]>>>,
    /// For each `k` slice, RescaleSlope and RescaleIntercept as the file states them (DICOM):
    /// the paper's script has its own defaults for missing ones.
    pub rescale_tags: Option<Vec<[Option<f64>; 2]>>,
    /// Things the reader had to assume, for the manifest (e.g. slices ordered by InstanceNumber).
    pub notes: Vec<String>,
}

impl Volume {
    /// The rescale of stored slice `k`.
    pub fn rescale_of(&self, k: usize) -> Rescale {
        self.rescale[if self.rescale.len() == 1 { 0 } else { k }]
    }

    /// Voxel spacing along `i`, `j`, `k` in mm: the lengths of the affine's columns.
    pub fn spacing(&self) -> [f64; 3] {
        std::array::from_fn(|c| {
            (0..3)
                .map(|r| self.affine[r][c].powi(2))
                .sum::<f64>()
                .sqrt()
        })
    }
}
