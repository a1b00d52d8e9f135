//! cargo-fuzz target `tokenizer_json`: see `tokenizer_json` in fuzz/bodies.rs.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::tokenizer_json(data));
