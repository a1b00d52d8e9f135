//! Fuzzes the GGUF header parser: any byte string must give Ok or a typed error, never a panic,
//! an out-of-bounds read or an allocation beyond the input's size. The deterministic counterpart that
//! CI runs is tests/gguf_malformed.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = rstar::model::gguf::parse(data, std::path::Path::new("fuzz.gguf")) {
        for t in &h.tensors {
            assert!(t.start + t.len <= data.len());
        }
    }
});
