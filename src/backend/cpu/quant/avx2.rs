//! The AVX2+FMA path of the quantized matmuls: blocks unpacked in registers ([`super::unpack`]);
//! `exact` in 8 f32 lanes, `fast` by `vpmaddubsw` with the sign trick, scaled per 16 values by
//! `vpmaddwd`. Q2_K and Q3_K go through the decoder and the primitives below, as do the 32-value
//! block dots of the AVX-512 path without an unpacker.

use std::arch::x86_64::*;

use super::blocks::{Decoded, Format};
use super::unpack::{self, hsum_i32};
use super::{Isa, Job};

pub(super) struct Avx2;

/// [`super::drive`] under AVX2 and FMA.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn drive<F: Format>(job: &Job) {
    super::drive::<F, Avx2>(job)
}

/// Lanes `8h..8h+8` of block `dec`'s sub-block `t` as f32 weights: `fd * q + fo`, as the scalar
/// decoder rounds it.
#[inline(always)]
unsafe fn weights8(dec: &Decoded, l: usize, fd: __m256, fo: __m256) -> __m256 {
    debug_assert!(l + 8 <= dec.q.len());
    // SAFETY: `l + 8 <= 256 = dec.q.len()` (`l` is below the block length in 8-value steps).
    let q = unsafe { _mm_loadl_epi64(dec.q.as_ptr().add(l) as *const __m128i) };
    let q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    _mm256_add_ps(_mm256_mul_ps(fd, q), fo)
}

/// The 32 quants of `dec` from value `l` in the `(|w|, a * sign(w))` form the unsigned-by-signed
/// byte products need (`a` in -127..=127, so the negation cannot overflow).
#[inline(always)]
unsafe fn signed_pair(dec: &Decoded, a: &[i8], l: usize) -> (__m256i, __m256i) {
    debug_assert!(l + 32 <= a.len());
    // SAFETY: `l + 32 <= qk <= 256`: inside `dec.q` (256) and `a` (`qk` values, see `Isa`).
    let (w, a) = unsafe {
        (
            _mm256_loadu_si256(dec.q.as_ptr().add(l) as *const __m256i),
            _mm256_loadu_si256(a.as_ptr().add(l) as *const __m256i),
        )
    };
    (_mm256_abs_epi8(w), _mm256_sign_epi8(a, w))
}

impl Isa for Avx2 {
    type Acc = __m256;

    fn zero() -> __m256 {
        // SAFETY: the all-zero bit pattern is a valid `__m256` (eight 0.0).
        unsafe { std::mem::zeroed() }
    }

    #[inline(always)]
    unsafe fn exact<const R: usize>(
        dec: &Decoded,
        qk: usize,
        x: [&[f32]; R],
        acc: &mut [__m256; R],
    ) {
        for t in 0..qk / 16 {
            let (fd, fo) = dec.factors(t);
            let (fd, fo) = (_mm256_set1_ps(fd), _mm256_set1_ps(fo));
            for l in [16 * t, 16 * t + 8] {
                // SAFETY: forwarded from the caller.
                let w = unsafe { weights8(dec, l, fd, fo) };
                for r in 0..R {
                    assert!(l + 8 <= x[r].len());
                    // SAFETY: checked just above.
                    let xv = unsafe { _mm256_loadu_ps(x[r].as_ptr().add(l)) };
                    acc[r] = _mm256_fmadd_ps(w, xv, acc[r]);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn hsum(acc: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn int_dot(dec: &Decoded, qk: usize, a: &[i8]) -> i32 {
        assert!(a.len() >= qk);
        let mut acc = _mm256_setzero_si256();
        for c in 0..qk / 32 {
            // SAFETY: `32c + 32 <= qk <= a.len()` (asserted above).
            let (w, av) = unsafe { signed_pair(dec, a, 32 * c) };
            let p = _mm256_maddubs_epi16(w, av);
            let s = _mm256_set_m128i(
                _mm_set1_epi16(dec.sc[2 * c + 1]),
                _mm_set1_epi16(dec.sc[2 * c]),
            );
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
        }
        // SAFETY: forwarded from the caller.
        unsafe { hsum_i32(acc) }
    }

    #[inline(always)]
    unsafe fn block_exact<F: Format, const R: usize>(
        b: &[u8],
        dec: &mut Decoded,
        x: [&[f32]; R],
        acc: &mut [__m256; R],
    ) {
        if !unpack::has::<F>() {
            F::decode(b, dec);
            // SAFETY: forwarded from the caller.
            return unsafe { Self::exact::<R>(dec, F::QK, x, acc) };
        }
        F::scales(b, dec);
        // SAFETY: the CPU has AVX2 (forwarded from the caller); `F` has an unpacker.
        let q = unsafe { unpack::quants::<F>(b) };
        for (c, &q) in q.iter().enumerate().take(F::QK / 32) {
            let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
            for (h, part) in parts.into_iter().enumerate() {
                let l = 32 * c + 8 * h;
                let (fd, fo) = dec.factors(l / 16);
                let q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part));
                let w = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(fd), q), _mm256_set1_ps(fo));
                for r in 0..R {
                    assert!(l + 8 <= x[r].len());
                    // SAFETY: checked just above.
                    let xv = unsafe { _mm256_loadu_ps(x[r].as_ptr().add(l)) };
                    acc[r] = _mm256_fmadd_ps(w, xv, acc[r]);
                }
            }
        }
    }

    type ISum = __m256i;

    #[inline(always)]
    unsafe fn hsum1(v: __m256i) -> i32 {
        // SAFETY: forwarded from the caller.
        unsafe { unpack::hsum_i32(v) }
    }

    #[inline(always)]
    unsafe fn block_isums<F: Format, const R: usize>(
        b: &[u8],
        dec: &mut Decoded,
        a: [(&[i8], &[i32]); R],
    ) -> [(__m256i, i32); R] {
        // SAFETY: the CPU has AVX2, forwarded from the caller.
        unsafe { unpack::block_isums::<F, Self, false, R>(b, dec, a) }
    }
}
