//! DICOM: files are scanned (header only) and grouped into series by SeriesInstanceUID, then
//! each series is read whole: pixel data decoded (JPEG, JPEG 2000, RLE, deflate, native; JPEG-LS
//! with the `jpegls` feature), rescale and padding recorded, slices ordered along the slice
//! normal by ImagePositionPatient. Multi-frame files (enhanced CT, RT dose) give one slice per
//! frame.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::simd::with_avx2;
use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::{StandardSopClassDictionary, tags};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{DecodedPixelData, PixelDecoder, PixelRepresentation, PlanarConfiguration};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::volume::{Format, Rescale, Samples, Volume};
use super::{IoError, limits};

/// Whether the file has the 128-byte preamble followed by `DICM`; or, a file that cannot
/// be opened (its permissions, or it vanished), so that the DICOM reader names why instead
/// of the file being passed over as no image.
pub fn has_preamble(path: &Path) -> bool {
    let mut head = [0u8; 132];
    match std::fs::metadata(path) {
        // Opening a FIFO would wait for a writer.
        Ok(meta) if !meta.is_file() => false,
        Ok(_) => match std::fs::File::open(path) {
            Ok(mut f) => f.read_exact(&mut head).is_ok() && &head[128..] == b"DICM",
            Err(_) => true,
        },
        Err(_) => true,
    }
}

/// What the scan learns from a file's header.
#[derive(Clone, Debug)]
pub struct Header {
    pub path: PathBuf,
    pub series_uid: Option<String>,
    pub patient_id: Option<String>,
    pub series_number: Option<String>,
    pub rows: u32,
    pub columns: u32,
    /// NumberOfFrames (1 when absent).
    pub frames: u32,
}

/// Files that belong to one volume: one series, one image size.
#[derive(Clone, Debug)]
pub struct Series {
    pub files: Vec<PathBuf>,
    /// Frames in each file, by its header.
    pub frames: Vec<u32>,
    pub patient_id: Option<String>,
    pub series_number: Option<String>,
    pub series_uid: Option<String>,
}

/// The order of a series' slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceOrder {
    /// Along the slice normal (ImagePositionPatient), falling back to InstanceNumber.
    Position,
    /// By file path, then frame: what the paper's LIDC script does.
    FileName,
}

fn text(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').trim().to_string())
        .filter(|s| !s.is_empty())
}

fn floats(element: Option<&InMemElement>) -> Option<Vec<f64>> {
    element
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| !v.is_empty())
}

fn open(path: &Path, until_pixels: bool) -> Result<DefaultDicomObject, IoError> {
    let mut options = OpenFileOptions::new();
    if until_pixels {
        options = options.read_until(tags::PIXEL_DATA);
    }
    let bytes = super::read_file(path)?;
    let limit = limits::max_voxels().saturating_mul(8);
    super::dicom_lengths::check(path, &bytes, limit)?;
    // Parsed from the bytes already read, with the preamble rule of dicom-rs's `open_file`:
    // skipped unless the file starts with the DICM magic itself.
    let preamble = if bytes.get(128..132) != Some(b"DICM") && bytes.starts_with(b"DICM") {
        ReadPreamble::Never
    } else {
        ReadPreamble::Always
    };
    let read = options
        .read_preamble(preamble)
        .from_reader(bytes.as_slice());
    read.map_err(|e| {
        let chain = error_chain(&e);
        if chain.contains("meta group") {
            IoError::invalid(
                path,
                format!("not a DICOM file with file meta information (group 0002): {chain}"),
            )
        } else {
            IoError::invalid(path, format!("not a readable DICOM file: {chain}"))
        }
    })
}

/// A decoder's error, as "unsupported" when it says the feature is not supported.
fn decode_error(path: &Path, what: &str, e: &dyn std::error::Error) -> IoError {
    let chain = error_chain(e);
    let lower = chain.to_ascii_lowercase();
    if lower.contains("unsupported") || lower.contains("not supported") {
        IoError::unsupported(path, format!("{what}: {chain}"))
    } else {
        IoError::invalid(path, format!("cannot {what}: {chain}"))
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads a file's header (not its pixel data).
pub fn scan(path: &Path) -> Result<Header, IoError> {
    let obj = open(path, true)?;
    let sop_class = obj
        .meta()
        .media_storage_sop_class_uid()
        .trim_end_matches('\0')
        .to_string();
    let size = |tag| obj.get(tag).and_then(|e| e.to_int::<u32>().ok());
    let (Some(rows), Some(columns)) = (size(tags::ROWS), size(tags::COLUMNS)) else {
        let name = StandardSopClassDictionary
            .by_uid(sop_class.as_str())
            .map(|entry| entry.name.to_string())
            .unwrap_or_else(|| format!("SOP class `{sop_class}`"));
        let what = if name.contains("Image") {
            format!("{name} without image data")
        } else {
            name
        };
        return Err(IoError::NotAnImage {
            path: path.to_path_buf(),
            what,
        });
    };
    let frames = obj
        .get(tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    // Decoders allocate what Rows, Columns and NumberOfFrames claim: check it first.
    limits::check_voxels(
        path,
        "Columns, Rows and NumberOfFrames",
        &[columns as u64, rows as u64, frames as u64],
    )?;
    Ok(Header {
        path: path.to_path_buf(),
        series_uid: text(&obj, tags::SERIES_INSTANCE_UID),
        patient_id: text(&obj, tags::PATIENT_ID),
        series_number: text(&obj, tags::SERIES_NUMBER),
        rows,
        columns,
        frames,
    })
}

/// Groups scanned files into series (by SeriesInstanceUID and image size, and by folder when
/// `by_folder`, as the paper's LIDC script takes each series folder for itself; a file without
/// a SeriesInstanceUID is a series of its own), each sorted by path, in order of first file.
pub fn group(headers: Vec<Header>, by_folder: bool) -> Vec<Series> {
    type Key = (String, u32, u32, Option<PathBuf>);
    let mut groups: BTreeMap<Key, Series> = BTreeMap::new();
    let mut first_seen: Vec<Key> = Vec::new();
    for h in headers {
        let uid = h
            .series_uid
            .clone()
            .unwrap_or_else(|| format!("file:{}", h.path.display()));
        let folder = by_folder
            .then(|| h.path.parent().map(Path::to_path_buf))
            .flatten();
        let key = (uid, h.rows, h.columns, folder);
        let series = groups.entry(key.clone()).or_insert_with(|| {
            first_seen.push(key);
            Series {
                files: Vec::new(),
                frames: Vec::new(),
                patient_id: h.patient_id.clone(),
                series_number: h.series_number.clone(),
                series_uid: h.series_uid.clone(),
            }
        });
        series.files.push(h.path);
        series.frames.push(h.frames);
    }
    first_seen
        .into_iter()
        .map(|key| {
            let series = groups.remove(&key).expect("grouped above");
            let mut files: Vec<(PathBuf, u32)> =
                series.files.into_iter().zip(series.frames).collect();
            files.sort();
            let (files, frames) = files.into_iter().unzip();
            Series {
                files,
                frames,
                ..series
            }
        })
        .collect()
}

/// One frame of one file, before ordering.
struct Slice {
    file: usize,
    frame: u32,
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    instance: Option<i64>,
    rescale: Rescale,
    rescale_tags: [Option<f64>; 2],
    spacing: Option<[f64; 2]>,
    values: FrameValues,
}

/// The element at `tag` in the frame's functional groups (per-frame first, then shared), or
/// at the top level.
fn frame_element(
    obj: &InMemDicomObject,
    frame: u32,
    group: dicom_object::Tag,
    tag: dicom_object::Tag,
) -> Option<&InMemElement> {
    let in_group = |seq: dicom_object::Tag, index: usize| {
        obj.get(seq)?
            .items()?
            .get(index)?
            .get(group)?
            .items()?
            .first()?
            .get(tag)
    };
    in_group(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame as usize)
        .or_else(|| in_group(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0))
        .or_else(|| obj.get(tag))
}

fn decode_file(path: &Path, file: usize, columns: u32, rows: u32) -> Result<Vec<Slice>, IoError> {
    let obj = open(path, false)?;
    let ts_uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    match TransferSyntaxRegistry.get(&ts_uid) {
        None => {
            return Err(IoError::unsupported(
                path,
                format!("unknown transfer syntax {ts_uid}"),
            ));
        }
        Some(ts) if !ts.can_decode_all() => {
            let hint = if ts.name().contains("JPEG-LS") {
                " (build lim with `--features jpegls`)"
            } else {
                ""
            };
            return Err(IoError::unsupported(
                path,
                format!("transfer syntax {} ({ts_uid}){hint}", ts.name()),
            ));
        }
        Some(_) => {}
    }
    let pixel_data = obj.get(tags::PIXEL_DATA);
    if pixel_data.is_none() && obj.get(tags::FLOAT_PIXEL_DATA).is_none() {
        return Err(IoError::invalid(path, "image header but no pixel data"));
    }
    if let Some(dicom_core::value::Value::PixelSequence(sequence)) = pixel_data.map(|e| e.value()) {
        super::dicom_codestream::check(path, sequence.fragments(), columns, rows)?;
    }
    // The decoders are dicom-pixeldata's; one that panics on a corrupt stream (its RLE
    // decoder indexes past a short segment) fails this file, not the run.
    let decoded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
            .map_err(|panic| {
                IoError::invalid(
                    path,
                    format!(
                        "cannot decode pixel data: the decoder failed ({}); the data are corrupt",
                        crate::error::panic_text(panic.as_ref())
                    ),
                )
            })?
            .map_err(|e| decode_error(path, "decode pixel data", &e))?;
    if decoded.rows() != rows || decoded.columns() != columns {
        return Err(IoError::invalid(
            path,
            format!(
                "pixel data is {}x{}, the header says {columns}x{rows}",
                decoded.columns(),
                decoded.rows()
            ),
        ));
    }
    let instance = obj
        .get(tags::INSTANCE_NUMBER)
        .and_then(|e| e.to_int::<i64>().ok());
    let grid_offsets = floats(obj.get(tags::GRID_FRAME_OFFSET_VECTOR));
    let mut slices = Vec::new();
    for frame in 0..decoded.number_of_frames() {
        let values =
            grey_values(&decoded, frame).map_err(|what| IoError::unsupported(path, what))?;
        let vec3 = |v: Vec<f64>| <[f64; 3]>::try_from(&v[..3.min(v.len())]).ok();
        let orientation = floats(frame_element(
            &obj,
            frame,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        ))
        .and_then(|v| <[f64; 6]>::try_from(&v[..]).ok());
        let mut position = floats(frame_element(
            &obj,
            frame,
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
        ))
        .and_then(vec3);
        // RT dose and NM grids: one position, frames offset along the normal.
        if let (Some(p), Some(offsets), Some(o)) = (position, &grid_offsets, orientation)
            && let Some(&offset) = offsets.get(frame as usize)
            && decoded.number_of_frames() > 1
        {
            let n = cross(&o);
            position = Some([
                p[0] + offset * n[0],
                p[1] + offset * n[1],
                p[2] + offset * n[2],
            ]);
        }
        let rescale_value = |tag| {
            frame_element(&obj, frame, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tag)
                .and_then(|e| e.to_float64().ok())
        };
        let rescale_tags = [
            rescale_value(tags::RESCALE_SLOPE),
            rescale_value(tags::RESCALE_INTERCEPT),
        ];
        let rescale = Rescale {
            slope: rescale_tags[0]
                .filter(|s| *s != 0.0 && s.is_finite())
                .unwrap_or(1.0),
            inter: rescale_tags[1].filter(|i| i.is_finite()).unwrap_or(0.0),
        };
        let spacing = floats(frame_element(
            &obj,
            frame,
            tags::PIXEL_MEASURES_SEQUENCE,
            tags::PIXEL_SPACING,
        ))
        .and_then(|v| <[f64; 2]>::try_from(&v[..2.min(v.len())]).ok());
        slices.push(Slice {
            file,
            frame,
            position,
            orientation,
            instance,
            rescale,
            rescale_tags,
            spacing,
            values,
        });
    }
    Ok(slices)
}

/// One frame's stored values: integers where the data are integral grey levels.
enum FrameValues {
    Int(Vec<i32>),
    Real(Vec<f64>),
}

/// Grey levels of `size`-byte samples, keeping the stored bits (the lowest `32 - shift`),
/// sign-extended when `signed`.
fn grey_ints(bytes: &[u8], size: usize, signed: bool, shift: u32) -> Vec<i32> {
    with_avx2!(if signed {
        grey_ints_body(bytes, size, |raw| ((raw << shift) as i32) >> shift)
    } else {
        grey_ints_body(bytes, size, |raw| ((raw << shift) >> shift) as i32)
    })
}

/// Into a buffer of the right size: a loop the compiler vectorises (collecting from
/// `chunks_exact` did not).
#[inline(always)]
fn grey_ints_body(bytes: &[u8], size: usize, keep: impl Fn(u32) -> i32) -> Vec<i32> {
    let mut out = vec![0; bytes.len() / size];
    match size {
        1 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = keep(b as u32);
            }
        }
        2 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = keep(u16::from_ne_bytes([c[0], c[1]]) as u32);
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = keep(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
    }
    out
}

/// The stored values of one frame (no rescale), one grey value per pixel: colour is turned
/// into BT.601 luma (or its Y plane, for YBR). Read from the decoded bytes (native byte order)
/// directly, for every layout DICOM allows: 1, 8, 16 or 32 bits, signed or not, bits stored
/// below bits allocated, interleaved or planar samples, 4:2:2 YBR.
fn grey_values(d: &DecodedPixelData, frame: u32) -> Result<FrameValues, String> {
    let pixels = (d.rows() * d.columns()) as usize;
    let samples = d.samples_per_pixel() as usize;
    let bits = d.bits_allocated() as usize;
    let stored = d.bits_stored().clamp(1, 32) as u32;
    let signed = d.pixel_representation() == PixelRepresentation::Signed;
    let photometric = d.photometric_interpretation().as_str();
    let data = d.data();
    let unsupported = || {
        format!("pixel layout: {bits} bits allocated, {samples} samples per pixel, {photometric}")
    };
    // Keep the stored bits, sign-extended when signed.
    let shift = 32 - stored;
    let extend = move |raw: u32| -> i64 {
        if signed {
            (((raw << shift) as i32) >> shift) as i64
        } else {
            ((raw << shift) >> shift) as i64
        }
    };

    // Grey levels of 8, 16 or 32 bits: one tight loop each, signedness decided outside it.
    if samples == 1 && matches!(bits, 8 | 16 | 32) && (signed || stored < 32) {
        let size = bits / 8;
        let start = frame as usize * pixels * size;
        let bytes = data
            .get(start..start + pixels * size)
            .ok_or_else(|| format!("frame {frame} is past the end of the pixel data"))?;
        let values = grey_ints(bytes, size, signed, shift);
        return Ok(FrameValues::Int(values));
    }

    // Every other layout, a sample at a time. Frames of 1-bit data are packed back to back.
    let first = frame as usize * pixels * samples;
    let sample = |n: usize| -> Option<f64> {
        let at = first + n;
        let raw: u32 = match bits {
            1 => ((data.get(at / 8)? >> (at % 8)) & 1) as u32,
            8 => *data.get(at)? as u32,
            16 => u16::from_ne_bytes([*data.get(2 * at)?, *data.get(2 * at + 1)?]) as u32,
            32 => u32::from_ne_bytes(data.get(4 * at..4 * at + 4)?.try_into().ok()?),
            _ => return None,
        };
        Some(extend(raw) as f64)
    };
    if photometric == "YBR_FULL_422"
        && samples == 3
        && bits == 8
        && data.len() >= (frame as usize + 1) * pixels * 2
    {
        // Native 4:2:2: Y Y Cb Cr for each pair of pixels; the Ys are the grey values.
        let base = frame as usize * pixels * 2;
        return Ok(FrameValues::Int(
            (0..pixels)
                .map(|p| data[base + (p / 2) * 4 + p % 2] as i32)
                .collect(),
        ));
    }
    let planar = d.planar_configuration() == PlanarConfiguration::PixelFirst;
    let at = |p: usize, s: usize| {
        if planar {
            s * pixels + p
        } else {
            p * samples + s
        }
    };
    let values: Option<Vec<f64>> = match samples {
        1 => (0..pixels).map(sample).collect(),
        3 if photometric.starts_with("YBR") => (0..pixels).map(|p| sample(at(p, 0))).collect(),
        3 => (0..pixels)
            .map(|p| {
                Some(
                    0.299 * sample(at(p, 0))?
                        + 0.587 * sample(at(p, 1))?
                        + 0.114 * sample(at(p, 2))?,
                )
            })
            .collect(),
        _ => None,
    };
    values.map(FrameValues::Real).ok_or_else(unsupported)
}

/// Row direction x column direction: the slice normal.
fn cross(o: &[f64; 6]) -> [f64; 3] {
    [
        o[1] * o[5] - o[2] * o[4],
        o[2] * o[3] - o[0] * o[5],
        o[0] * o[4] - o[1] * o[3],
    ]
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// A series read into a volume, and the files of it that could not be read.
pub struct SeriesVolume {
    pub volume: Volume,
    pub file_errors: Vec<IoError>,
}

/// Reads every file of a series into one volume, slices in `order`. Files that fail are
/// left out and returned beside the volume; if none can be read, the first error is returned.
pub fn read_series(series: &Series, order: SliceOrder) -> Result<SeriesVolume, IoError> {
    let first = series.files.first().expect("a series has files");
    let head = scan(first)?;
    let frames = series.frames.iter().map(|&f| f as u64).sum::<u64>();
    limits::check_voxels(
        first,
        &format!(
            "the series of {} files: Columns, Rows and frames",
            series.files.len()
        ),
        &[head.columns as u64, head.rows as u64, frames],
    )?;
    let mut slices = Vec::new();
    let mut file_errors = Vec::new();
    for (index, path) in series.files.iter().enumerate() {
        match decode_file(path, index, head.columns, head.rows) {
            Ok(mut s) => slices.append(&mut s),
            Err(e) => file_errors.push(e),
        }
    }
    if slices.is_empty() {
        return Err(file_errors.remove(0));
    }
    let mut notes = Vec::new();
    if !file_errors.is_empty() {
        notes.push(format!(
            "{} of {} files could not be read and are left out",
            file_errors.len(),
            series.files.len()
        ));
    }

    let orientation = slices.iter().find_map(|s| s.orientation);
    let normal = orientation.as_ref().map(cross);
    match order {
        SliceOrder::FileName => slices.sort_by_key(|s| (s.file, s.frame)),
        SliceOrder::Position => {
            let positioned = slices.iter().all(|s| s.position.is_some()) && normal.is_some();
            if positioned {
                let n = normal.expect("checked");
                slices.sort_by(|a, b| {
                    dot(&a.position.unwrap(), &n)
                        .total_cmp(&dot(&b.position.unwrap(), &n))
                        .then(a.file.cmp(&b.file))
                });
            } else if slices.len() > 1 && slices.iter().all(|s| s.instance.is_some()) {
                notes.push("sorted by InstanceNumber: ImagePositionPatient or ImageOrientationPatient missing".into());
                slices.sort_by_key(|s| (s.instance, s.file, s.frame));
            } else if slices.len() > 1 {
                notes.push(
                    "sorted by file name: no ImagePositionPatient and no InstanceNumber".into(),
                );
                slices.sort_by_key(|s| (s.file, s.frame));
            }
        }
    }

    let (columns, rows) = (head.columns as usize, head.rows as usize);
    let o = orientation.unwrap_or([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let n = normal.unwrap_or([0.0, 0.0, 1.0]);
    let spacing = slices
        .iter()
        .find_map(|s| s.spacing)
        .filter(|s| s.iter().all(|v| *v > 0.0 && v.is_finite()));
    if spacing.is_none() {
        notes.push("no usable PixelSpacing: 1 mm assumed".into());
    }
    let [row_spacing, column_spacing] = spacing.unwrap_or([1.0, 1.0]);
    let along: Vec<Option<f64>> = slices
        .iter()
        .map(|s| s.position.map(|p| dot(&p, &n)))
        .collect();
    let steps: Vec<f64> = along
        .windows(2)
        .filter_map(|w| Some(w[1]? - w[0]?))
        .filter(|d| d.abs() > 1e-6)
        .collect();
    let slice_step = median(steps).unwrap_or(1.0);
    let origin = slices[0].position.unwrap_or([0.0; 3]);
    let affine = std::array::from_fn(|r| {
        [
            o[r] * column_spacing,
            o[3 + r] * row_spacing,
            n[r] * slice_step,
            origin[r],
        ]
    });

    let samples = if slices
        .iter()
        .all(|s| matches!(s.values, FrameValues::Int(_)))
    {
        let mut all = Vec::with_capacity(slices.len() * rows * columns);
        for slice in &slices {
            if let FrameValues::Int(v) = &slice.values {
                all.extend_from_slice(v);
            }
        }
        Samples::I32(all)
    } else {
        Samples::F64(
            slices
                .iter()
                .flat_map(|s| -> Box<dyn Iterator<Item = f64> + '_> {
                    match &s.values {
                        FrameValues::Int(v) => Box::new(v.iter().map(|&x| x as f64)),
                        FrameValues::Real(v) => Box::new(v.iter().copied()),
                    }
                })
                .collect(),
        )
    };

    let obj = open(first, true)?;
    let padding = obj
        .get(tags::PIXEL_PADDING_VALUE)
        .and_then(|e| e.to_float64().ok());
    let inverted = text(&obj, tags::PHOTOMETRIC_INTERPRETATION).is_some_and(|p| p == "MONOCHROME1");
    let first_value = |tag| floats(obj.get(tag)).map(|v| v[0]);
    let window = first_value(tags::WINDOW_CENTER)
        .zip(first_value(tags::WINDOW_WIDTH))
        .filter(|(_, w)| *w > 0.0);
    Ok(SeriesVolume {
        volume: Volume {
            sources: series.files.clone(),
            format: Format::Dicom,
            dims: [columns, rows, slices.len()],
            samples,
            rescale: slices.iter().map(|s| s.rescale).collect(),
            affine,
            padding,
            inverted,
            window,
            slice_sources: Some(slices.iter().map(|s| s.file).collect()),
            slice_positions: Some(slices.iter().map(|s| s.position).collect()),
            rescale_tags: Some(slices.iter().map(|s| s.rescale_tags).collect()),
            notes,
        },
        file_errors,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}
