//! Every ggml block format librstar decodes, against the `gguf` Python package's numpy dequantizer on
//! random blocks (tests/fixtures/gguf/quant_blocks.safetensors, made by scripts/make_gguf_reference.py).

mod common;

use rstar::backend::cpu::quant::QuantFormat;
use rstar::model::quant::{dequantize, GgmlType};

#[test]
fn dequantize_matches_gguf_python() {
    let bytes = std::fs::read(common::fixtures().join("gguf/quant_blocks.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let floats = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];
    let types = floats
        .into_iter()
        .chain(QuantFormat::ALL.map(GgmlType::Quant));
    for ty in types {
        let raw = st.tensor(&format!("{}.raw", ty.name())).unwrap();
        let want: Vec<f32> = st
            .tensor(&format!("{}.f32", ty.name()))
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut got = vec![0f32; want.len()];
        dequantize(ty, raw.data(), &mut got).unwrap();
        // numpy evaluates the same f32 expressions in the same order: equal up to the last bit
        // (1 ulp allowed for numpy's pairwise/fused evaluation choices).
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let ulp = (g.to_bits() as i64 - w.to_bits() as i64).abs();
            assert!(
                g == w || ulp <= 1,
                "{} value {i}: got {g}, gguf-py {w}",
                ty.name()
            );
        }
        // A short buffer is an error, not a panic.
        assert!(dequantize(ty, &raw.data()[1..], &mut got).is_err());
    }
}
