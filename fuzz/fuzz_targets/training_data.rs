//! cargo-fuzz target `training_data`: see `training_data` in fuzz/bodies.rs.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::training_data(data));
