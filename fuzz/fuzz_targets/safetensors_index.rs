//! cargo-fuzz target `safetensors_index`: see `safetensors_index` in fuzz/bodies.rs.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::safetensors_index(data));
