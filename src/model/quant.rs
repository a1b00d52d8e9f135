//! ggml tensor types and their dequantization to f32.
//!
//! Each quantized type stores fixed-size blocks of `block_size()` values in `type_size()` bytes. The
//! decoders below follow ggml's reference `dequantize_row_*` (ggml-quants.c) operation for operation,
//! in f32 and in the same order, so the floats equal llama.cpp's and the `gguf` Python package's bit
//! for bit (the tests in tests/gguf_quant.rs compare against blocks dequantized by that package).
//!
//! One driver, [`dequantize`], walks the blocks (in parallel for large tensors) and calls the
//! per-format block function; F32/F16/BF16 are plain conversions handled by the same driver.

use half::{bf16, f16};
use rayon::prelude::*;

/// The ggml element types librstar reads. Ids are ggml's `enum ggml_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

/// Values per K-quant super-block.
const QK_K: usize = 256;

impl GgmlType {
    /// From ggml's numeric type id; None for types librstar does not decode.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }

    /// Whether the type is a plain float format the runtime computes with directly.
    pub fn is_float(self) -> bool {
        matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }

    fn block_fn(self) -> fn(&[u8], &mut [f32]) {
        match self {
            GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            GgmlType::F16 => |b, y| y[0] = f16::from_le_bytes([b[0], b[1]]).to_f32(),
            GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            GgmlType::Q4_0 => block_q4_0,
            GgmlType::Q4_1 => block_q4_1,
            GgmlType::Q5_0 => block_q5_0,
            GgmlType::Q5_1 => block_q5_1,
            GgmlType::Q8_0 => block_q8_0,
            GgmlType::Q4K => block_q4_k,
            GgmlType::Q5K => block_q5_k,
            GgmlType::Q6K => block_q6_k,
        }
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
    let f = ty.block_fn();
    // Chunks of 4096 blocks keep rayon's overhead negligible and still spread big tensors over cores.
    const CHUNK: usize = 4096;
    out.par_chunks_mut(bs * CHUNK)
        .zip(src.par_chunks(ts * CHUNK))
        .for_each(|(o, s)| {
            for (y, b) in o.chunks_exact_mut(bs).zip(s.chunks_exact(ts)) {
                f(b, y);
            }
        });
    Ok(())
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_0: `d: f16, qs[16]`; value = (nibble - 8) * d, low nibbles first.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `d: f16, m: f16, qs[16]`; value = nibble * d + m.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block: nibbles from `qs`, fifth bits from the u32 `qh`.
fn q5_values(qh: u32, qs: &[u8], j: usize) -> (u8, u8) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    ((qs[j] & 0x0F) | h0, (qs[j] >> 4) | h1)
}

/// Q5_0: `d: f16, qh: u32, qs[16]`; value = (q5 - 16) * d.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let (x0, x1) = q5_values(qh, qs, j);
        y[j] = (x0 as i32 - 16) as f32 * d;
        y[j + 16] = (x1 as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs[16]`; value = q5 * d + m.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let (x0, x1) = q5_values(qh, qs, j);
        y[j] = x0 as f32 * d + m;
        y[j + 16] = x1 as f32 * d + m;
    }
}

/// Q8_0: `d: f16, qs: [i8; 32]`; value = q * d.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = (q as i8) as f32 * d;
    }
}

/// The 6-bit scale and min of sub-block `j` packed in the 12 `scales` bytes of Q4_K/Q5_K.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K and Q5_K share their layout up to the fifth bits: `d, dmin: f16, scales[12], [qh[32],] qs[128]`;
/// value = d * scale * q - dmin * min per 32-value sub-block. `qh` is None for Q4_K.
fn block_k4_k5(b: &[u8], qh: Option<&[u8]>, qs: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    for (n, chunk) in y.chunks_exact_mut(64).enumerate() {
        let ql = &qs[n * 32..n * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * n, scales);
        let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (lo, hi) = chunk.split_at_mut(32);
        for l in 0..32 {
            let (h1, h2) = match qh {
                Some(h) => (
                    if h[l] & (1 << (2 * n)) != 0 { 16 } else { 0 },
                    if h[l] & (2 << (2 * n)) != 0 { 16 } else { 0 },
                ),
                None => (0, 0),
            };
            lo[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
            hi[l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn block_q4_k(b: &[u8], y: &mut [f32]) {
    block_k4_k5(b, None, &b[16..144], y);
}

fn block_q5_k(b: &[u8], y: &mut [f32]) {
    block_k4_k5(b, Some(&b[16..48]), &b[48..176], y);
}

/// Q6_K: `ql[128], qh[64], scales: [i8; 16], d: f16`; value = d * scale * (q6 - 32).
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for (n, chunk) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[n * 64..n * 64 + 64];
        let qh = &b[128 + n * 32..128 + n * 32 + 32];
        let sc = &b[192 + n * 8..192 + n * 8 + 8];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, &qv) in q.iter().enumerate() {
                let s = sc[is + 2 * k] as i8 as f32;
                chunk[l + 32 * k] = d * s * (qv as i32 - 32) as f32;
            }
        }
    }
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
        dequantize(GgmlType::Q4_0, &b, &mut y).unwrap();
        assert_eq!(y[0], -4.0);
        assert_eq!(y[15], 3.5);
        assert_eq!(y[16], 3.5);
        assert_eq!(y[31], -4.0);
        // Q8_0: d = 2.0 (0x4000), q = -128, 127, 0...
        let mut b = vec![0x00, 0x40, 0x80, 0x7f];
        b.extend([0u8; 30]);
        dequantize(GgmlType::Q8_0, &b, &mut y).unwrap();
        assert_eq!((y[0], y[1], y[2]), (-256.0, 254.0, 0.0));
        assert!(dequantize(GgmlType::Q8_0, &b[..33], &mut y).is_err());
    }
}
