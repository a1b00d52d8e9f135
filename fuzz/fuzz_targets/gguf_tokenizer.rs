//! cargo-fuzz target `gguf_tokenizer`: see `gguf_tokenizer` in fuzz/bodies.rs.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::gguf_tokenizer(data));
