//! Register unpackers of the x86 paths: a block's quants straight from its bytes into 256-bit
//! vectors of 32 `i8` (shifts, masks and byte shuffles, as llama.cpp's `ggml_vec_dot_*` do), never
//! through a [`Decoded`] buffer, and the integer block dots built on them (shared by the AVX2 and
//! AVX-512 paths: a 256-bit vector holds one 32-value block or sub-block pair).
//!
//! Chunk `c` of a block holds values `32c..32c + 32` equal to [`Decoded::q`] there (the test
//! `unpackers_match_the_decoder` checks every format against [`Format::quants`]). Formats without
//! an unpacker here (Q2_K, Q3_K) go through [`Format::decode`].

use std::arch::x86_64::*;

use super::blocks::{Decoded, Format};
use super::{Isa, QuantFormat};

/// Whether format `F` has a register unpacker.
pub(super) const fn has<F: Format>() -> bool {
    !matches!(F::KIND, QuantFormat::Q2K | QuantFormat::Q3K)
}

/// Whether every quant of `F` is in `0..=127`, so it can be the unsigned operand of the byte dots
/// as it is (no sign transfer to the activations).
const fn unsigned<F: Format>() -> bool {
    matches!(
        F::KIND,
        QuantFormat::Q4_1 | QuantFormat::Q5_1 | QuantFormat::Q4K | QuantFormat::Q5K
    )
}

/// 32 bytes at `b[at..at + 32]`.
#[inline(always)]
unsafe fn load32(b: &[u8], at: usize) -> __m256i {
    assert!(at + 32 <= b.len());
    // SAFETY: in bounds (asserted above); unaligned load.
    unsafe { _mm256_loadu_si256(b.as_ptr().add(at) as *const __m256i) }
}

/// The 16 nibbles pairs at `b[at..at + 16]` as 32 bytes, low nibbles first (the 32-value formats).
#[inline(always)]
unsafe fn nibbles(b: &[u8], at: usize) -> __m256i {
    assert!(at + 16 <= b.len());
    // SAFETY: in bounds (asserted above); unaligned load.
    let x = unsafe { _mm_loadu_si128(b.as_ptr().add(at) as *const __m128i) };
    let v = _mm256_set_m128i(_mm_srli_epi16::<4>(x), x);
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// The 32 bits of the u32 at `b[at..at + 4]` as bytes `0x10` (bit set) or 0, bit `v` to byte `v`
/// (llama.cpp's `bytes_from_bits_32`): the fifth bits of Q5_0/Q5_1.
#[inline(always)]
unsafe fn fifth_bits(b: &[u8], at: usize) -> __m256i {
    let x = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    let set = _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Bit `k` of every byte of `h` moved to bit 4 (other bits cleared).
#[inline(always)]
unsafe fn bit_to_4(h: __m256i, k: u32) -> __m256i {
    let m = _mm256_set1_epi8(0x10);
    let moved = match k {
        0 => _mm256_slli_epi16::<4>(h),
        1 => _mm256_slli_epi16::<3>(h),
        2 => _mm256_slli_epi16::<2>(h),
        3 => _mm256_slli_epi16::<1>(h),
        4 => h,
        5 => _mm256_srli_epi16::<1>(h),
        6 => _mm256_srli_epi16::<2>(h),
        _ => _mm256_srli_epi16::<3>(h),
    };
    _mm256_and_si256(moved, m)
}

/// The quants of block `b` (`F::BYTES` bytes) as `F::QK / 32` vectors of 32 `i8`, values
/// `32c..32c + 32` in vector `c` (the rest zero), as [`Format::quants`] decodes them.
///
/// # Safety
/// The CPU has AVX2; `has::<F>()`.
#[inline(always)]
pub(super) unsafe fn quants<F: Format>(b: &[u8]) -> [__m256i; 8] {
    assert!(b.len() == F::BYTES);
    let mut v = [_mm256_setzero_si256(); 8];
    let low = _mm256_set1_epi8(0x0F);
    // SAFETY (every call below): the CPU has AVX2 (the caller's contract); the loads are checked.
    unsafe {
        match F::KIND {
            QuantFormat::Q4_0 => v[0] = _mm256_sub_epi8(nibbles(b, 2), _mm256_set1_epi8(8)),
            QuantFormat::Q4_1 => v[0] = nibbles(b, 4),
            QuantFormat::Q5_0 => {
                let q = _mm256_or_si256(nibbles(b, 6), fifth_bits(b, 2));
                v[0] = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
            }
            QuantFormat::Q5_1 => v[0] = _mm256_or_si256(nibbles(b, 8), fifth_bits(b, 4)),
            QuantFormat::Q8_0 => v[0] = load32(b, 2),
            QuantFormat::Q4K | QuantFormat::Q5K => {
                let (qs, qh) = if F::KIND == QuantFormat::Q4K {
                    (16, None)
                } else {
                    (48, Some(load32(b, 16)))
                };
                for n in 0..4 {
                    let x = load32(b, qs + 32 * n);
                    v[2 * n] = _mm256_and_si256(x, low);
                    v[2 * n + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
                    if let Some(h) = qh {
                        let k = 2 * n as u32;
                        v[2 * n] = _mm256_or_si256(v[2 * n], bit_to_4(h, k));
                        v[2 * n + 1] = _mm256_or_si256(v[2 * n + 1], bit_to_4(h, k + 1));
                    }
                }
            }
            QuantFormat::Q6K => {
                let (m, off) = (_mm256_set1_epi8(0x30), _mm256_set1_epi8(32));
                for n in 0..2 {
                    let (ql0, ql1) = (load32(b, 64 * n), load32(b, 64 * n + 32));
                    let qh = load32(b, 128 + 32 * n);
                    let hs = [
                        _mm256_slli_epi16::<4>(qh),
                        _mm256_slli_epi16::<2>(qh),
                        qh,
                        _mm256_srli_epi16::<2>(qh),
                    ];
                    let ls = [
                        _mm256_and_si256(ql0, low),
                        _mm256_and_si256(ql1, low),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low),
                    ];
                    for k in 0..4 {
                        let q = _mm256_or_si256(ls[k], _mm256_and_si256(hs[k], m));
                        v[4 * n + k] = _mm256_sub_epi8(q, off);
                    }
                }
            }
            QuantFormat::Q2K | QuantFormat::Q3K => unreachable!("no register unpacker"),
        }
    }
    v
}

/// Sum of the eight i32 lanes.
#[inline(always)]
pub(super) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

/// Per activation row `a[r] = (quants, 16-value sums)` (`QK` quants in -127..=127): the integer
/// sums `sum_l sc[l / 16] * q[l] * a[r][l]` of block `b` (unpacked once, into registers) as eight
/// i32 partial sums, and the min sum `sum_t mn[t] * bsum[t]`, with the scales and mins of `dec`
/// (`F::scales`). `VNNI`: unscaled dots (32-value blocks) by `vpdpbusd`; else, and for every
/// scaled dot, `vpmaddubsw` then `vpmaddwd` by the scales. Integer sums are exact, so they equal
/// the scalar path's whatever the instructions.
///
/// # Safety
/// The CPU has AVX2 (and AVX-512VL + VNNI for `VNNI`); `has::<F>()`.
#[inline(always)]
pub(super) unsafe fn isums<F: Format, const VNNI: bool, const R: usize>(
    b: &[u8],
    dec: &Decoded,
    a: [(&[i8], &[i32]); R],
) -> [(__m256i, i32); R] {
    // SAFETY: forwarded from the caller.
    let q = unsafe { quants::<F>(b) };
    let chunks = F::QK / 32;
    let scaled = F::QK == 256;
    let mut sc = [_mm256_setzero_si256(); 8];
    if scaled {
        for (c, s) in sc.iter_mut().enumerate() {
            *s = _mm256_set_m128i(
                _mm_set1_epi16(dec.sc[2 * c + 1]),
                _mm_set1_epi16(dec.sc[2 * c]),
            );
        }
    }
    // SAFETY: `dec.mn` holds 16 i16.
    let mn = unsafe {
        [
            _mm256_cvtepi16_epi32(_mm_loadu_si128(dec.mn.as_ptr() as *const __m128i)),
            _mm256_cvtepi16_epi32(_mm_loadu_si128(dec.mn.as_ptr().add(8) as *const __m128i)),
        ]
    };
    let ones = _mm256_set1_epi16(1);
    // A loop, not `map`: a closure would not inherit the caller's target features, and its
    // intrinsics would become calls.
    let mut out = [(_mm256_setzero_si256(), 0); R];
    for (o, (a, bsum)) in out.iter_mut().zip(a) {
        assert!(a.len() >= F::QK && bsum.len() >= F::QK / 16);
        let mut acc = _mm256_setzero_si256();
        for c in 0..chunks {
            // SAFETY: `32c + 32 <= QK <= a.len()` (asserted above).
            let av = unsafe { _mm256_loadu_si256(a.as_ptr().add(32 * c) as *const __m256i) };
            let (w, av) = if unsigned::<F>() {
                (q[c], av)
            } else {
                (_mm256_abs_epi8(q[c]), _mm256_sign_epi8(av, q[c]))
            };
            acc = if VNNI && !scaled {
                _mm256_dpbusd_epi32(acc, w, av)
            } else {
                let s = if scaled { sc[c] } else { ones };
                _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, av), s))
            };
        }
        let msum = if F::MINS && scaled {
            // SAFETY: `bsum` holds 16 sums (asserted above).
            let p = unsafe {
                let b0 = _mm256_loadu_si256(bsum.as_ptr() as *const __m256i);
                let b1 = _mm256_loadu_si256(bsum.as_ptr().add(8) as *const __m256i);
                _mm256_add_epi32(_mm256_mullo_epi32(b0, mn[0]), _mm256_mullo_epi32(b1, mn[1]))
            };
            // SAFETY: forwarded from the caller.
            unsafe { hsum_i32(p) }
        } else {
            super::min_sum::<F>(dec, bsum)
        };
        *o = (acc, msum);
    }
    out
}

/// [`Isa::block_isums`] of the x86 paths `K` (AVX2, AVX-512 with `VNNI` or without: one function,
/// the VNNI choice a constant): by the register unpacker ([`isums`]) where `F` has one, else
/// through [`Format::decode`] and `K`'s [`Isa::int_dot`] (its sum in lane 0).
///
/// # Safety
/// The CPU has the features of `K` (AVX2, and AVX-512VL + VNNI for `VNNI`).
#[inline(always)]
pub(super) unsafe fn block_isums<F: Format, K: Isa, const VNNI: bool, const R: usize>(
    b: &[u8],
    dec: &mut Decoded,
    a: [(&[i8], &[i32]); R],
) -> [(__m256i, i32); R] {
    if !has::<F>() {
        F::decode(b, dec);
        let mut out = [(_mm256_setzero_si256(), 0); R];
        for (o, (q, bsum)) in out.iter_mut().zip(a) {
            // SAFETY: forwarded from the caller.
            let i = unsafe { K::int_dot(dec, F::QK, q) };
            *o = (
                _mm256_setr_epi32(i, 0, 0, 0, 0, 0, 0, 0),
                super::min_sum::<F>(dec, bsum),
            );
        }
        return out;
    }
    F::scales(b, dec);
    // SAFETY: forwarded from the caller; `F` has an unpacker.
    unsafe { isums::<F, VNNI, R>(b, dec, a) }
}
