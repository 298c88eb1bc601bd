//! The `nifti` fuzz target: `lim::fuzz::nifti` on each input (see its documentation there,
//! and fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lim::fuzz::nifti(data));
