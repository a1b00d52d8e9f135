//! cargo-fuzz target `gguf_header`: see `gguf_header` in fuzz/bodies.rs.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::gguf_header(data));
