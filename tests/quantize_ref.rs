//! librstar's quantizers against llama.cpp's own: the same rows quantized by libggml's
//! `ggml_quantize_chunk` (tests/fixtures/gguf/quantize_ref.safetensors, made by
//! scripts/make_quantize_reference.py) must give the same bytes, block for block.

mod common;

use rstar::backend::cpu::quant::quantize::{can_quantize, quantize};
use rstar::backend::cpu::quant::QuantFormat;

#[test]
fn quantized_bytes_equal_llama_cpp() {
    let bytes = std::fs::read(common::fixtures().join("gguf/quantize_ref.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let input: Vec<f32> = st
        .tensor("input")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut checked = 0;
    for f in QuantFormat::ALL.into_iter().filter(|&f| can_quantize(f)) {
        let want = st.tensor(f.name()).unwrap().data().to_vec();
        let mut got = vec![0u8; want.len()];
        quantize(f, &input, &mut got).unwrap();
        let bb = f.block_bytes();
        let bad: Vec<usize> = (0..want.len() / bb)
            .filter(|&b| got[b * bb..(b + 1) * bb] != want[b * bb..(b + 1) * bb])
            .collect();
        assert!(
            bad.is_empty(),
            "{}: {} of {} blocks differ from llama.cpp's (first: block {})",
            f.name(),
            bad.len(),
            want.len() / bb,
            bad[0]
        );
        // A length that is not whole blocks is an error, not a panic.
        assert!(quantize(f, &input[1..], &mut got).is_err());
        checked += 1;
    }
    assert_eq!(checked, 8);
}
