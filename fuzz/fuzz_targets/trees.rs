//! cargo-fuzz target `trees`: see `trees` in fuzz/bodies.rs.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::trees(data));
