//! The int8 panel layout of the `fast` GEMM ([`super::gemm`]): weight rows unpacked 16 at a time
//! (a group; the output columns of one vector), one step per format for every format.
//!
//! Block `b` of a group holds, at offsets given by [`Layout`]:
//! - `q`: `QK / 4` quads of `[16 columns][4 bytes]`, the quants `q + OFF` as unsigned bytes (the
//!   unsigned operand of `vpdpbusd`; `OFF` makes the signed formats non-negative), so one
//!   `vpdpbusd` with a broadcast 4-byte activation group adds 4 products to each column's lane;
//! - `sc` (K-quants only): the scale of each scale group per column, i32;
//! - `corr`: per column, the pairs `(OFF * sc[2p], OFF * sc[2p + 1])` of the 16-value sub-blocks,
//!   i16, for `vpdpwssd` against the activations' 16-value sums (the offset's correction);
//! - `mn`: the same pairs of mins;
//! - `d`, `dmin`: 16 f32 each.
//!
//! Quants come from the register unpackers of [`super::unpack`] where the format has one, else
//! from the decoder, and are transposed 16 x 16 four-byte units at a time in registers.

use std::arch::x86_64::*;

use super::super::bcast;
use super::blocks::{Decoded, Format};
use super::unpack;
use super::QuantFormat;

/// Where the parts of a packed block lie, and how the kernel reads them.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    /// Bytes per packed block of a group.
    pub stride: usize,
    /// Values per scale group: 32 where sub-block pairs share a scale (and in the 32-value
    /// formats, whose scale is 1), else 16.
    pub group: usize,
    /// Whether the integer sums are scaled per group (the K-quants).
    pub scaled: bool,
    /// The offset added to the quants.
    pub off: i32,
    /// Offsets of `sc`, `corr`, `mn` and `d` (`dmin` follows `d`).
    pub sc: usize,
    pub corr: usize,
    pub mn: usize,
    pub d: usize,
}

impl Layout {
    /// The layout of format `F`.
    pub const fn of<F: Format>() -> Layout {
        let qk = F::QK;
        let scaled = qk == 256;
        let group = match F::KIND {
            QuantFormat::Q2K | QuantFormat::Q3K | QuantFormat::Q6K => 16,
            _ => 32,
        };
        let off = match F::KIND {
            QuantFormat::Q4_0 => 8,
            QuantFormat::Q5_0 => 16,
            QuantFormat::Q8_0 => 128,
            QuantFormat::Q3K => 4,
            QuantFormat::Q6K => 32,
            _ => 0,
        };
        let sc = qk * 16;
        let corr = sc + if scaled { qk / group * 64 } else { 0 };
        let mn = corr + qk / 32 * 64;
        let d = mn + qk / 32 * 64;
        Layout {
            stride: d + 128,
            group,
            scaled,
            off,
            sc,
            corr,
            mn,
            d,
        }
    }
}

/// A block's quants for one column, 64-byte aligned for the transposing loads.
#[repr(C, align(64))]
struct Quants([[u8; 256]; 16]);

/// Packs `cols <= 16` weight rows of `nb` blocks of `F` (`src`, row after row) into one group
/// (`dst`: `nb` blocks of [`Layout::stride`] bytes). Missing columns are zero.
///
/// # Safety
/// The CPU has AVX-512F/BW and AVX2.
#[inline(always)]
pub(super) unsafe fn pack<F: Format>(src: &[u8], cols: usize, nb: usize, dst: &mut [u8]) {
    let lay = Layout::of::<F>();
    let rb = nb * F::BYTES;
    assert!(cols <= 16 && src.len() == cols * rb && dst.len() >= nb * lay.stride);
    let mut qs = Quants([[0; 256]; 16]);
    let mut dec = Decoded::default();
    let off = _mm256_set1_epi8(lay.off as i8);
    for b in 0..nb {
        let o = &mut dst[b * lay.stride..(b + 1) * lay.stride];
        o[lay.sc..].fill(0);
        for (c, q) in qs.0.iter_mut().enumerate() {
            if c >= cols {
                q.fill(0);
                continue;
            }
            let blk = &src[c * rb + b * F::BYTES..][..F::BYTES];
            let v = if unpack::has::<F>() {
                F::scales(blk, &mut dec);
                // SAFETY: the CPU has AVX2 (the caller's contract); `F` has an unpacker.
                unsafe { unpack::quants::<F>(blk) }
            } else {
                F::decode(blk, &mut dec);
                let mut v = [_mm256_setzero_si256(); 8];
                for (i, v) in v.iter_mut().enumerate().take(F::QK / 32) {
                    // SAFETY: `32i + 32 <= QK <= 256 = dec.q.len()`.
                    *v = unsafe { _mm256_loadu_si256(dec.q.as_ptr().add(32 * i) as *const _) };
                }
                v
            };
            for (i, v) in v.iter().enumerate().take(F::QK / 32) {
                // SAFETY: `32i + 32 <= 256`: inside the column's buffer.
                unsafe {
                    _mm256_storeu_si256(
                        q.as_mut_ptr().add(32 * i) as *mut _,
                        _mm256_add_epi8(*v, off),
                    )
                };
            }
            scales::<F>(&dec, lay, c, o);
        }
        for s in 0..F::QK.div_ceil(64) {
            let mut r = [_mm512_setzero_si512(); 16];
            for (r, q) in r.iter_mut().zip(&qs.0) {
                // SAFETY: `64s + 64 <= 256`: inside the column's buffer.
                *r = unsafe { _mm512_loadu_si512(q.as_ptr().add(64 * s) as *const _) };
            }
            // SAFETY: the CPU has AVX-512F (the caller's contract).
            let t = unsafe { bcast::transpose(&r) };
            for (l, t) in t.iter().enumerate().take((F::QK / 4 - 16 * s).min(16)) {
                let at = 64 * (16 * s + l);
                assert!(at + 64 <= o.len());
                // SAFETY: in bounds (asserted above).
                unsafe { _mm512_storeu_si512(o.as_mut_ptr().add(at) as *mut _, *t) };
            }
        }
    }
}

/// Column `c`'s scales, offset corrections, mins and factors of the block decoded in `dec`, into
/// the packed block `o`.
#[inline(always)]
fn scales<F: Format>(dec: &Decoded, lay: Layout, c: usize, o: &mut [u8]) {
    let put =
        |o: &mut [u8], at: usize, v: [u8; 4]| o[at + 4 * c..at + 4 * c + 4].copy_from_slice(&v);
    if lay.scaled {
        for t in 0..F::QK / lay.group {
            let sc = dec.sc[t * lay.group / 16] as i32;
            put(o, lay.sc + 64 * t, sc.to_le_bytes());
        }
    }
    let pair = |lo: i32, hi: i32| ((lo as u16 as u32) | ((hi as u32) << 16)).to_le_bytes();
    for p in 0..F::QK / 32 {
        let (s0, s1) = (dec.sc[2 * p] as i32, dec.sc[2 * p + 1] as i32);
        put(o, lay.corr + 64 * p, pair(lay.off * s0, lay.off * s1));
        put(
            o,
            lay.mn + 64 * p,
            pair(dec.mn[2 * p] as i32, dec.mn[2 * p + 1] as i32),
        );
    }
    put(o, lay.d, dec.d.to_le_bytes());
    put(o, lay.d + 64, dec.dmin.to_le_bytes());
}
