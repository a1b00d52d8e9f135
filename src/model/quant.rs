//! ggml tensor types of a GGUF file and their dequantization to f32.
//!
//! The block formats themselves (sizes, layouts, decoders) live in the CPU backend
//! ([`crate::backend::cpu::quant`]), which also multiplies with them in place; this module maps
//! ggml's type ids onto them and adds the float types. [`dequantize`] walks a tensor (in parallel
//! for large ones) with the backend's decoder, whose floats equal llama.cpp's and the `gguf` Python
//! package's bit for bit (tests/gguf_quant.rs compares against blocks dequantized by that package).

use half::{bf16, f16};
use rayon::prelude::*;

use crate::backend::cpu::quant::{self as q, QuantFormat};

/// The ggml element types librstar reads: the float types and the backend's block formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Quant(QuantFormat),
}

impl GgmlType {
    /// From ggml's numeric type id; None for types librstar does not decode.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            _ => GgmlType::Quant(QuantFormat::from_ggml_id(id)?),
        })
    }

    /// The block format of a quantized type; None for the float types.
    pub fn quant_format(self) -> Option<QuantFormat> {
        match self {
            GgmlType::Quant(f) => Some(f),
            _ => None,
        }
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Quant(f) => f.name(),
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        self.quant_format().map_or(1, QuantFormat::block_values)
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Quant(f) => f.block_bytes(),
        }
    }

    /// Whether the type is a plain float format the runtime computes with directly.
    pub fn is_float(self) -> bool {
        self.quant_format().is_none()
    }
}

/// Decodes `src` (whole blocks of `ty`) into `out`. Errors (as a message) when the lengths disagree.
pub fn dequantize(ty: GgmlType, src: &[u8], out: &mut [f32]) -> std::result::Result<(), String> {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if !src.len().is_multiple_of(ts) || src.len() / ts * bs != out.len() {
        return Err(format!(
            "{} bytes of {} cannot hold {} values",
            src.len(),
            ty.name(),
            out.len()
        ));
    }
    // Chunks of 4096 blocks keep rayon's overhead negligible and still spread big tensors over cores.
    const CHUNK: usize = 4096;
    out.par_chunks_mut(bs * CHUNK)
        .zip(src.par_chunks(ts * CHUNK))
        .try_for_each(|(o, s)| match ty.quant_format() {
            Some(f) => q::dequantize(f, s, o).map_err(|e| e.to_string()),
            None => {
                for (y, b) in o.iter_mut().zip(s.chunks_exact(ts)) {
                    *y = match ty {
                        GgmlType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
                        GgmlType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                        _ => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    };
                }
                Ok(())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_q4_0_and_q8_0() {
        // d = 0.5 (f16 0x3800); nibbles 0..15 in the low half, 15..0 in the high half.
        let mut b = vec![0x00, 0x38];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut y = [0f32; 32];
        dequantize(GgmlType::Quant(QuantFormat::Q4_0), &b, &mut y).unwrap();
        assert_eq!(y[0], -4.0);
        assert_eq!(y[15], 3.5);
        assert_eq!(y[16], 3.5);
        assert_eq!(y[31], -4.0);
        // Q8_0: d = 2.0 (0x4000), q = -128, 127, 0...
        let mut b = vec![0x00, 0x40, 0x80, 0x7f];
        b.extend([0u8; 30]);
        dequantize(GgmlType::Quant(QuantFormat::Q8_0), &b, &mut y).unwrap();
        assert_eq!((y[0], y[1], y[2]), (-256.0, 254.0, 0.0));
        assert!(dequantize(GgmlType::Quant(QuantFormat::Q8_0), &b[..33], &mut y).is_err());
    }
}
