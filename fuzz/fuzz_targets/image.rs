//! The `image` fuzz target: `lim::fuzz::image` on each input (see its documentation there,
//! and fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lim::fuzz::image(data));
