//! The `nrrd` fuzz target: `lim::fuzz::nrrd` on each input (see its documentation there,
//! and fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lim::fuzz::nrrd(data));
