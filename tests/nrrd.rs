//! The NRRD reader: raw and gzip encodings, both byte orders, detached data, geometry.

mod common;

use lim::io::{Samples, nrrd};

/// A path in this process's scratch folder, which the tests share: each test names its own
/// files (two tests writing one name raced).
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-nrrd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const VALUES: [i16; 12] = [-1024, -500, 0, 1, 2, 3, 100, 200, 300, 400, 3071, -1];

fn header(encoding: &str, endian: &str, space: &str) -> String {
    format!(
        "NRRD0004\n# a comment\ntype: short\ndimension: 3\nspace: {space}\nsizes: 3 2 2\n\
         space directions: (0.5,0,0) (0,0.5,0) (0,0,2)\nendian: {endian}\nencoding: {encoding}\n\
         space origin: (-10,20,30)\n\n"
    )
}

#[test]
fn raw_gzip_big_endian_and_detached_data_read_the_same() {
    let le: Vec<u8> = VALUES.iter().flat_map(|v| v.to_le_bytes()).collect();
    let be: Vec<u8> = VALUES.iter().flat_map(|v| v.to_be_bytes()).collect();
    let gzip = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap()
    };
    // Two gzip members (as `cat a.gz b.gz` makes): inflated as one stream, not in one call.
    let members = [gzip(&le[..10]), gzip(&le[10..])].concat();
    let cases = [
        ("raw.nrrd", "raw", "little", le.clone()),
        ("big.nrrd", "raw", "big", be.clone()),
        ("gzip.nrrd", "gzip", "little", gzip(&le)),
        ("gzip-big.nrrd", "gzip", "big", gzip(&be)),
        ("gzip-members.nrrd", "gzip", "little", members),
    ];
    for (name, encoding, endian, data) in cases {
        let bytes = [
            header(encoding, endian, "left-posterior-superior").into_bytes(),
            data,
        ]
        .concat();
        let path = scratch(name);
        std::fs::write(&path, bytes).unwrap();
        let vol = nrrd::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(vol.dims, [3, 2, 2], "{name}");
        assert!(
            matches!(&vol.samples, Samples::I16(v) if v == &VALUES),
            "{name}"
        );
        assert_eq!(
            vol.affine,
            [
                [0.5, 0.0, 0.0, -10.0],
                [0.0, 0.5, 0.0, 20.0],
                [0.0, 0.0, 2.0, 30.0]
            ],
            "{name}"
        );
    }
    // A detached header, in RAS: x and y flip into LPS.
    let data = scratch("detached.raw");
    std::fs::write(&data, &le).unwrap();
    let nhdr = scratch("detached.nhdr");
    let text = header("raw", "little", "right-anterior-superior").replace(
        "encoding: raw\n",
        "encoding: raw\ndata file: detached.raw\n",
    );
    std::fs::write(&nhdr, text.trim_end()).unwrap();
    let vol = nrrd::read(&nhdr).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vol.sources.len(), 2);
    assert_eq!(
        vol.affine,
        [
            [-0.5, 0.0, 0.0, 10.0],
            [0.0, -0.5, 0.0, -20.0],
            [0.0, 0.0, 2.0, 30.0]
        ]
    );
}

#[test]
fn bad_files_are_named_errors() {
    let path = scratch("short.nrrd");
    std::fs::write(
        &path,
        [header("raw", "little", "LPS").into_bytes(), vec![0u8; 5]].concat(),
    )
    .unwrap();
    let err = nrrd::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("short.nrrd") && err.contains("truncated image data: 5 of 24 bytes"),
        "{err}"
    );
    let path = scratch("text.nrrd");
    std::fs::write(&path, header("text", "little", "LPS")).unwrap();
    let err = nrrd::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("unsupported") && err.contains("`text`"),
        "{err}"
    );
    let path = scratch("nope.nrrd");
    std::fs::write(&path, b"P5 not a nrrd").unwrap();
    assert!(
        nrrd::read(&path)
            .unwrap_err()
            .to_string()
            .contains("not a NRRD file")
    );
}

#[test]
fn the_sample_chest_ct() {
    let vol = nrrd::read(&common::samples().join("ct_volumes/lung1_image.nrrd")).unwrap();
    assert_eq!(vol.dims, [512, 512, 48]);
    assert_eq!(vol.spacing(), [0.5703125, 0.5703125, 5.0]);
    let hu: Vec<f64> = (0..vol.samples.len()).map(|i| vol.samples.get(i)).collect();
    let (lo, hi) = hu
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (-1024.0, 3071.0));
}

/// Sizes past the voxel limit, or that claim more than the data holds, are a named error,
/// before anything that size is allocated; sizes whose product overflows are too.
#[test]
fn huge_claimed_sizes_are_clear_errors() {
    let le: Vec<u8> = VALUES.iter().flat_map(|v| v.to_le_bytes()).collect();
    for (name, sizes, wanted) in [
        (
            "huge.nrrd",
            "30000 30000 30000",
            "past the limit of 1073741824",
        ),
        ("claims-more.nrrd", "1000 1000 1000", "truncated image data"),
        (
            "overflowing.nrrd",
            "4294967296 4294967296 4294967296",
            "past the limit",
        ),
    ] {
        let text = header("raw", "little", "left-posterior-superior")
            .replace("sizes: 3 2 2", &format!("sizes: {sizes}"));
        let path = scratch(name);
        std::fs::write(&path, [text.into_bytes(), le.clone()].concat()).unwrap();
        let err = nrrd::read(&path).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(wanted), "{err}");
    }
}
