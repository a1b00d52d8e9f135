//! The ggml block layouts (ggml-common.h), each decoded into one integer form, [`Decoded`].
//!
//! Every format stores a row as fixed-size blocks of `QK` values (32, or 256 for the K-quants).
//! A block decodes to signed 8-bit quants `q`, an integer scale `sc` and min `mn` per 16 values,
//! and two float factors, such that value `l` is
//!
//! ```text
//! (d * sc[l / 16]) * q[l] + -(dmin * mn[l / 16])        (each product and the sum rounded in f32)
//! ```
//!
//! This is the expression ggml's `dequantize_row_*` (and the `gguf` Python package) evaluate, in
//! the same order, so the floats are the same bit for bit. The same form feeds the integer dot
//! products of `fast` precision: `sum sc * q * a` in integers, then `d` and `dmin` in f32.

use half::f16;

use super::QuantFormat;

/// Values per K-quant super-block.
pub(crate) const QK_K: usize = 256;
/// Sub-blocks of 16 values per super-block (the granularity of [`Decoded::sc`]).
pub(crate) const NSUB: usize = QK_K / 16;

/// One block in integer form (only the first `QK` quants and `QK / 16` scales are meaningful).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Decoded {
    pub q: [i8; QK_K],
    pub sc: [i16; NSUB],
    pub mn: [i16; NSUB],
    pub d: f32,
    pub dmin: f32,
}

impl Default for Decoded {
    fn default() -> Self {
        Decoded {
            q: [0; QK_K],
            sc: [0; NSUB],
            mn: [0; NSUB],
            d: 0.0,
            dmin: 0.0,
        }
    }
}

impl Decoded {
    /// The float factor and offset of sub-block `t`: value = `fd * q + fo`.
    #[inline(always)]
    pub fn factors(&self, t: usize) -> (f32, f32) {
        (self.d * self.sc[t] as f32, -(self.dmin * self.mn[t] as f32))
    }

    /// Scales (and mins) for a 32-value format: one block, one scale.
    #[inline(always)]
    fn unit(&mut self, d: f32, dmin: f32, mn: i16) {
        self.d = d;
        self.dmin = dmin;
        self.sc[..2].fill(1);
        self.mn[..2].fill(mn);
    }
}

/// A ggml block format: its sizes and its decoder. Implemented by zero-sized types, so kernels are
/// generic over the format and the decoder inlines into each SIMD path.
pub trait Format {
    /// The format (a constant, so kernels can pick a register unpacker at compile time).
    const KIND: QuantFormat;
    /// Values per block.
    const QK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Whether the block has mins (`mn` not all zero).
    const MINS: bool;
    /// Decodes the scales of one block (`sc`, `mn`, `d`, `dmin`, not `q`); `b.len() == BYTES`.
    fn scales(b: &[u8], out: &mut Decoded);
    /// Decodes the quants of one block (the first `QK` of `q`); `b.len() == BYTES`.
    fn quants(b: &[u8], q: &mut [i8; QK_K]);
    /// Decodes one block; `b.len() == BYTES`.
    #[inline(always)]
    fn decode(b: &[u8], out: &mut Decoded) {
        Self::scales(b, out);
        Self::quants(b, &mut out.q);
    }
}

/// The f16 at `b[i..i + 2]` as f32 (`half`: F16C where the CPU has it). An inline exponent
/// rebase for normal numbers was measured slower on the benchmark's random scales (a mispredicted
/// branch per 16 blocks).
#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline(always)]
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Q4_0: `d: f16, qs[16]`; q = nibble - 8, low nibbles first.
pub struct Q4_0;
/// Q4_1: `d, m: f16, qs[16]`; value = nibble * d + m.
pub struct Q4_1;
/// Q5_0: `d: f16, qh: u32, qs[16]`; q = q5 - 16.
pub struct Q5_0;
/// Q5_1: `d, m: f16, qh: u32, qs[16]`; value = q5 * d + m.
pub struct Q5_1;
/// Q8_0: `d: f16, qs: [i8; 32]`.
pub struct Q8_0;
/// Q2_K: `scales[16] (4-bit scale | 4-bit min << 4), qs[64], d, dmin: f16`; 2-bit quants.
pub struct Q2K;
/// Q3_K: `hmask[32], qs[64], scales[12] (16 packed 6-bit), d: f16`; q = q2 - 4 * !hbit.
pub struct Q3K;
/// Q4_K: `d, dmin: f16, scales[12] (8 packed 6-bit scales and mins), qs[128]`.
pub struct Q4K;
/// Q5_K: `d, dmin: f16, scales[12], qh[32], qs[128]`.
pub struct Q5K;
/// Q6_K: `ql[128], qh[64], scales: [i8; 16], d: f16`; q = q6 - 32.
pub struct Q6K;

/// Nibbles of a 32-value block, low nibbles first, plus `hi(j)` and `hi(j + 16)` (the fifth bits
/// of Q5_0/Q5_1, 0 for the 4-bit formats), minus `off`.
#[inline(always)]
fn nibbles32(qs: &[u8], qh: u32, off: i8, q: &mut [i8]) {
    let qs: &[u8; 16] = qs.try_into().expect("16 bytes");
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        q[j] = ((qs[j] & 0x0F) | h0) as i8 - off;
        q[j + 16] = ((qs[j] >> 4) | h1) as i8 - off;
    }
}

/// Implements [`Format`] for a 32-value format: `$d`/`$m`: byte offsets of the f16 scale and min
/// (None: no min), `$qh`: of the fifth bits (None: 4-bit), `$qs`: of the nibbles, `$off` subtracted.
macro_rules! format32 {
    ($F:ident, $bytes:expr, $d:expr, $m:expr, $qh:expr, $qs:expr, $off:expr) => {
        impl Format for $F {
            const KIND: QuantFormat = QuantFormat::$F;
            const QK: usize = 32;
            const BYTES: usize = $bytes;
            const MINS: bool = $m.is_some();
            #[inline(always)]
            fn scales(b: &[u8], o: &mut Decoded) {
                match $m {
                    Some(m) => o.unit(f16_at(b, $d), -f16_at(b, m), 1),
                    None => o.unit(f16_at(b, $d), 0.0, 0),
                }
            }
            #[inline(always)]
            fn quants(b: &[u8], q: &mut [i8; QK_K]) {
                let qh = match $qh {
                    Some(h) => u32_at(b, h),
                    None => 0,
                };
                nibbles32(&b[$qs..$qs + 16], qh, $off, q);
            }
        }
    };
}

format32!(Q4_0, 18, 0, None::<usize>, None::<usize>, 2, 8);
format32!(Q4_1, 20, 0, Some(2usize), None::<usize>, 4, 0);
format32!(Q5_0, 22, 0, None::<usize>, Some(2usize), 6, 16);
format32!(Q5_1, 24, 0, Some(2usize), Some(4usize), 8, 0);

impl Format for Q8_0 {
    const KIND: QuantFormat = QuantFormat::Q8_0;
    const QK: usize = 32;
    const BYTES: usize = 34;
    const MINS: bool = false;
    #[inline(always)]
    fn scales(b: &[u8], o: &mut Decoded) {
        o.unit(f16_at(b, 0), 0.0, 0);
    }
    #[inline(always)]
    fn quants(b: &[u8], q: &mut [i8; QK_K]) {
        for (q, &v) in q[..32].iter_mut().zip(&b[2..34]) {
            *q = v as i8;
        }
    }
}

/// The 2-bit fields of `qs` (64 bytes) in ggml's order: value `n*128 + j*32 + l` is bits
/// `2j..2j+2` of `qs[n*32 + l]`. Shared by Q2_K and Q3_K.
#[inline(always)]
fn crumbs(qs: &[u8], q: &mut [i8; QK_K]) {
    let qs: &[u8; 64] = qs.try_into().expect("64 bytes");
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                q[n * 128 + j * 32 + l] = ((qs[n * 32 + l] >> (2 * j)) & 3) as i8;
            }
        }
    }
}

impl Format for Q2K {
    const KIND: QuantFormat = QuantFormat::Q2K;
    const QK: usize = QK_K;
    const BYTES: usize = 84;
    const MINS: bool = true;
    #[inline(always)]
    fn scales(b: &[u8], o: &mut Decoded) {
        for (t, &s) in b[..NSUB].iter().enumerate() {
            o.sc[t] = (s & 0x0F) as i16;
            o.mn[t] = (s >> 4) as i16;
        }
        o.d = f16_at(b, 80);
        o.dmin = f16_at(b, 82);
    }
    #[inline(always)]
    fn quants(b: &[u8], q: &mut [i8; QK_K]) {
        crumbs(&b[16..80], q);
    }
}

impl Format for Q3K {
    const KIND: QuantFormat = QuantFormat::Q3K;
    const QK: usize = QK_K;
    const BYTES: usize = 110;
    const MINS: bool = false;
    #[inline(always)]
    fn scales(b: &[u8], o: &mut Decoded) {
        // 16 six-bit scales: low nibbles in bytes 0..8, top two bits in bytes 8..12 (ggml's
        // kmask1/kmask2 shuffle, byte by byte).
        let s = &b[96..108];
        for t in 0..NSUB {
            let low = if t < 8 { s[t] & 0x0F } else { s[t - 8] >> 4 };
            let high = (s[8 + t % 4] >> (2 * (t / 4))) & 3;
            o.sc[t] = (low | (high << 4)) as i16 - 32;
        }
        o.mn = [0; NSUB];
        o.d = f16_at(b, 108);
        o.dmin = 0.0;
    }
    #[inline(always)]
    fn quants(b: &[u8], q: &mut [i8; QK_K]) {
        crumbs(&b[32..96], q);
        let hm: &[u8; 32] = b[..32].try_into().expect("32 bytes");
        for n in 0..2 {
            for j in 0..4 {
                let bit = 1u8 << (4 * n + j);
                for (l, &h) in hm.iter().enumerate() {
                    let low = if h & bit != 0 { 0 } else { 4 };
                    q[n * 128 + j * 32 + l] -= low;
                }
            }
        }
    }
}

/// The eight 6-bit scales and eight mins of a Q4_K/Q5_K block (its 12 `scales` bytes, `s`), as
/// llama.cpp unpacks them with 32-bit masks: scale `j` is byte `j` of the first result, min `j` of
/// the second.
#[inline(always)]
pub(crate) fn k4_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let u = [u32_at(s, 0), u32_at(s, 4), u32_at(s, 8)];
    let sc = [u[0] & K1, (u[2] & K2) | (((u[0] >> 6) & K3) << 4)];
    let mn = [u[1] & K1, ((u[2] >> 4) & K2) | (((u[1] >> 6) & K3) << 4)];
    let bytes = |v: [u32; 2]| {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&v[0].to_le_bytes());
        b[4..].copy_from_slice(&v[1].to_le_bytes());
        b
    };
    (bytes(sc), bytes(mn))
}

/// Scales, mins and factors of a Q4_K/Q5_K block: `d, dmin, scales[12]` lead both layouts.
#[inline(always)]
fn k4_scales(b: &[u8], o: &mut Decoded) {
    let (sc, mn) = k4_scales_mins(&b[4..16]);
    for s in 0..8 {
        o.sc[2 * s..2 * s + 2].fill(sc[s] as i16);
        o.mn[2 * s..2 * s + 2].fill(mn[s] as i16);
    }
    o.d = f16_at(b, 0);
    o.dmin = f16_at(b, 2);
}

/// Q4_K and Q5_K share their layout up to the fifth bits `qh` (None for Q4_K): `d, dmin, scales[12],
/// [qh[32],] qs[128]`; sub-block `2n` holds the low nibbles of `qs[32n..32n+32]`, `2n+1` the high.
#[inline(always)]
fn k4_k5_quants(qh: Option<&[u8]>, qs: &[u8], q: &mut [i8; QK_K]) {
    let qs: &[u8; 128] = qs.try_into().expect("128 bytes");
    for n in 0..4 {
        for l in 0..32 {
            let (h1, h2) = match qh {
                Some(h) => (
                    ((h[l] >> (2 * n)) & 1) << 4,
                    ((h[l] >> (2 * n + 1)) & 1) << 4,
                ),
                None => (0, 0),
            };
            q[n * 64 + l] = ((qs[n * 32 + l] & 0x0F) | h1) as i8;
            q[n * 64 + 32 + l] = ((qs[n * 32 + l] >> 4) | h2) as i8;
        }
    }
}

impl Format for Q4K {
    const KIND: QuantFormat = QuantFormat::Q4K;
    const QK: usize = QK_K;
    const BYTES: usize = 144;
    const MINS: bool = true;
    #[inline(always)]
    fn scales(b: &[u8], o: &mut Decoded) {
        k4_scales(b, o);
    }
    #[inline(always)]
    fn quants(b: &[u8], q: &mut [i8; QK_K]) {
        k4_k5_quants(None, &b[16..144], q);
    }
}

impl Format for Q5K {
    const KIND: QuantFormat = QuantFormat::Q5K;
    const QK: usize = QK_K;
    const BYTES: usize = 176;
    const MINS: bool = true;
    #[inline(always)]
    fn scales(b: &[u8], o: &mut Decoded) {
        k4_scales(b, o);
    }
    #[inline(always)]
    fn quants(b: &[u8], q: &mut [i8; QK_K]) {
        k4_k5_quants(Some(&b[16..48]), &b[48..176], q);
    }
}

impl Format for Q6K {
    const KIND: QuantFormat = QuantFormat::Q6K;
    const QK: usize = QK_K;
    const BYTES: usize = 210;
    const MINS: bool = false;
    #[inline(always)]
    fn scales(b: &[u8], o: &mut Decoded) {
        for t in 0..NSUB {
            o.sc[t] = b[192 + t] as i8 as i16;
        }
        o.mn = [0; NSUB];
        o.d = f16_at(b, 208);
        o.dmin = 0.0;
    }
    #[inline(always)]
    fn quants(b: &[u8], q: &mut [i8; QK_K]) {
        let b: &[u8; 210] = b.try_into().expect("210 bytes");
        for n in 0..2 {
            let (ql, qh) = (&b[n * 64..n * 64 + 64], &b[128 + n * 32..128 + n * 32 + 32]);
            let q = &mut q[n * 128..n * 128 + 128];
            for l in 0..32 {
                q[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                q[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
    }
}
