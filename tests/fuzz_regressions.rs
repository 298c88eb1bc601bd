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

/// A committed crash input, `tests/fixtures/fuzz/<target>/<name>`.
fn crash_input(target: &str, name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target)
        .join(name)
}

/// The error `lim::io::dicom::scan` gives for DICOM crash input `name`, copied to `x.dcm`.
fn scan_error(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("lim-fuzz-scan-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.dcm");
    std::fs::copy(crash_input("dicom", name), &file).unwrap();
    let err = lim::io::dicom::scan(&file).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    err
}

/// The failures `lim preprocess` reports for DICOM crash input `name`, copied to `x.dcm`.
fn preprocess_failures(name: &str) -> Vec<lim::io::Failure> {
    let dir = std::env::temp_dir().join(format!("lim-fuzz-run-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::copy(crash_input("dicom", name), dir.join("in/x.dcm")).unwrap();
    let opts = lim::preprocess::Options::new(dir.join("out"));
    let report =
        lim::preprocess::run(&[dir.join("in")], &opts, &lim::preprocess::NoProgress).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    report.failures
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
    let err = scan_error("oom-element-length-3758161918");
    assert!(
        err.contains("x.dcm") && err.contains("claims 3758161918 bytes, but only"),
        "{err}"
    );
}

/// The second: an RLE DICOM file whose segment decodes short, on which dicom-pixeldata's RLE
/// decoder indexes past its buffer and panics; now the file's failure, saying so.
#[test]
fn a_dicom_decoder_panic_is_the_files_failure() {
    let failures = preprocess_failures("panic-rle-segment-short-9900");
    assert!(
        failures.len() == 1
            && failures[0].error.contains(
                "x.dcm: cannot decode pixel data: the decoder failed (index out of bounds"
            ),
        "{failures:?}"
    );
}

/// The third and fourth: deflated data sets that break off, one claiming a 775 MB element
/// first, which the parser allocated and zeroed before it met the break (a minute and more
/// under the fuzzer per input); now refused by the length check, which inflates first.
#[test]
fn a_broken_deflated_data_set_is_refused_before_parsing() {
    for name in ["slow-deflate-claims-774975030", "slow-deflate-corrupt"] {
        let err = scan_error(name);
        assert!(
            err.contains("x.dcm") && err.contains("corrupt deflated data set"),
            "{name}: {err}"
        );
    }
}

/// The fifth: an `.npz` whose label is 0x1818181818181818, from which `lim evaluate` made a
/// class name per index up to it; now refused: more classes than samples.
#[test]
fn an_npz_label_past_its_samples_is_refused() {
    let dir = std::env::temp_dir().join(format!("lim-fuzz-npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.npz");
    std::fs::copy(crash_input("npz", "oom-label-classes"), &file).unwrap();
    let err = lim::eval::dataset::Dataset::open(&file, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.npz") && err.contains("more classes than the"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The sixth: a 31 KB DICOM file with a 6-byte AT value (tags are 4 bytes); the parser read
/// one tag, went on two bytes early, and met a claim of 1.4 GB it allocated; now refused.
#[test]
fn a_binary_value_of_a_broken_length_is_refused() {
    let err = scan_error("oom-misaligned-by-a-6-byte-tag");
    assert!(
        err.contains("x.dcm")
            && err.contains("(0028,2112) holds 6 bytes, not a whole number of 4-byte values"),
        "{err}"
    );
}

/// The seventh: a deflated file whose meta group length (0002,0000) covers an element of
/// group 0003 after the group 0002 elements. The parser reads the meta group by that length,
/// so its data set starts later than where group 0002 ends, where the length check used to
/// inflate an empty stream and find nothing to check; the parser then met a 1.3 GB claim and
/// allocated it. The check now ends the meta group where the parser does.
#[test]
fn the_meta_group_ends_where_its_length_says() {
    let err = scan_error("oom-meta-group-length-past-its-group");
    assert!(
        err.contains("x.dcm") && err.contains("corrupt deflated data set"),
        "{err}"
    );
}

/// The eighth: 22 KB of pickle that wraps a value in a tuple and memoizes it, thousands of
/// times over. Python shares what the memo holds; the reader copied it, a deeper tuple each
/// time, so the copies grew quadratically (two seconds and a gigabyte per input). Nesting is
/// now bounded (here the refusal), and so are copies (`io::pickle`'s tests).
#[test]
fn a_pickle_that_copies_through_its_memo_is_refused() {
    let bytes = std::fs::read(crash_input("checkpoint", "slow-memo-copies-quadratic")).unwrap();
    let err = lim::io::pickle::parse(&bytes).unwrap_err();
    assert!(err.contains("values nest deeper than 100"), "{err}");
}

/// The ninth: a 343-byte file with a sequence delimiter (FFFE,E0DD) among an item's elements,
/// claiming 4,294,967,040 bytes. The parser takes such a tag for an element there and
/// allocated (and zeroed) its claim, 8 GB; the length check took every delimiter for one.
/// Delimiters now count where the parser counts them, and the claim is refused.
#[test]
fn a_delimiter_among_elements_is_an_element_whose_claim_is_checked() {
    let err = scan_error("oom-sequence-delimiter-among-elements");
    assert!(
        err.contains("x.dcm") && err.contains("element (FFFE,E0DD) claims 4294967040 bytes"),
        "{err}"
    );
}

/// The tenth: a 3 KB JPEG 2000 file whose header says 100 x 100 but whose codestream declares
/// a 100 x 4,194,404 image in 41,945 tiles; openjp2 allocated 5 GB for it before failing.
/// Codestreams (JPEG 2000 and JPEG) are now held to the header's size before decoding.
#[test]
fn a_codestream_larger_than_its_header_is_refused_before_decoding() {
    let failures = preprocess_failures("oom-jpeg2000-codestream-past-its-header");
    assert!(
        failures.len() == 1
            && failures[0].error.contains(
                "x.dcm: cannot decode pixel data: its codestream declares a 100 x 4194404 image"
            ),
        "{failures:?}"
    );
}
