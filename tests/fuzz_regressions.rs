//! Every input a fuzzer crashed lim with, replayed: each is committed under
//! `tests/fixtures/fuzz/<target>/`, named for what it did, and goes through its target's body
//! (`lim::fuzz`) here, where it must now fail cleanly. Its own test binary: the fuzz bodies
//! set the process's voxel limit to the fuzzers' one.

use std::path::Path;

fn crash_inputs(target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    if !dir.is_dir() {
        return Vec::new();
    }
    lim::io::walk(&[dir]).unwrap().files
}

#[test]
fn every_crash_input_the_fuzzers_found_now_fails_cleanly() {
    let mut replayed = 0;
    for (name, target) in lim::fuzz::TARGETS {
        for file in crash_inputs(name) {
            target(&std::fs::read(&file).unwrap());
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no crash input found under tests/fixtures/fuzz"
    );
}

/// The first crash: a 674-byte DICOM file whose element claimed 3,758,161,918 bytes, which
/// the DICOM parser allocated before reading; now refused by its claim.
#[test]
fn a_dicom_element_claiming_more_than_the_file_holds_is_refused_unread() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/dicom/oom-element-length-3758161918");
    let dir = std::env::temp_dir().join(format!("lim-fuzz-regression-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.dcm");
    std::fs::copy(&input, &file).unwrap();
    let err = lim::io::dicom::scan(&file).unwrap_err().to_string();
    assert!(
        err.contains("x.dcm") && err.contains("claims 3758161918 bytes, but only"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
