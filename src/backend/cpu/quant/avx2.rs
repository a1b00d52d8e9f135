//! The AVX2+FMA path of the quantized matmuls (8 f32 lanes; integer dots by `vpmaddubsw` with the
//! sign trick, scaled per 16 values by `vpmaddwd`), and the 256-bit VNNI dot of 32-value blocks
//! used by the AVX-512 VNNI path.

use std::arch::x86_64::*;

use super::blocks::{Decoded, Format};
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

/// Sum of the eight i32 lanes.
#[inline(always)]
pub(super) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
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
}

/// [`Isa::int_dot`] of a 32-value block by `vpdpbusd` on 256-bit vectors (AVX-512 VNNI + VL): no
/// 16-bit intermediate, the two sub-block scales applied to the i32 sums.
///
/// # Safety
/// The CPU has AVX2, AVX-512VL and AVX-512 VNNI; `a` holds 32 values.
#[inline(always)]
pub(super) unsafe fn int_dot32_vnni(dec: &Decoded, a: &[i8]) -> i32 {
    assert!(a.len() >= 32);
    // SAFETY: 32 values in `dec.q` and `a` (asserted above).
    let (w, av) = unsafe { signed_pair(dec, a, 0) };
    let dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, av);
    let s = _mm256_set_m128i(
        _mm_set1_epi32(dec.sc[1] as i32),
        _mm_set1_epi32(dec.sc[0] as i32),
    );
    // SAFETY: forwarded from the caller.
    unsafe { hsum_i32(_mm256_mullo_epi32(dp, s)) }
}
