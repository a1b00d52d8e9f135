//! The AVX-512 path of the quantized matmuls: blocks unpacked in registers ([`super::unpack`]);
//! 16 f32 lanes (one 16-value sub-block per vector) in `exact`; in `fast`, the 256-bit dots of
//! [`super::unpack`] (unscaled dots of 32-value blocks by `vpdpbusd` with VNNI). Q2_K and Q3_K go
//! through the decoder and the 512-bit dots below (64 quants per step by `vpmaddubsw` +
//! `vpmaddwd`, or with VNNI by `vpdpbusd` with the scales applied to its i32 sums).

use std::arch::x86_64::*;

use super::avx2::{self, Avx2};
use super::blocks::{Decoded, Format};
use super::unpack;
use super::{ActQ8, Isa, Job, ROWS};

/// The AVX-512 path; `VNNI` selects `vpdpbusd` for the integer dots.
pub(super) struct Avx512<const VNNI: bool>;

/// [`super::drive`] under AVX-512F/BW (and AVX2, FMA).
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(super) unsafe fn drive<F: Format>(job: &Job) {
    super::drive::<F, Avx512<false>>(job)
}

/// [`super::drive`] under AVX-512F/BW/VL with VNNI.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW, AVX-512VL, AVX-512 VNNI, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(super) unsafe fn drive_vnni<F: Format>(job: &Job) {
    super::drive::<F, Avx512<true>>(job)
}

/// The 64 quants of `dec` from value `l` as (`|w|`, `a * sign(w)`); `a` in -127..=127.
#[inline(always)]
unsafe fn signed_pair(dec: &Decoded, a: &[i8], l: usize) -> (__m512i, __m512i) {
    debug_assert!(l + 64 <= a.len());
    // SAFETY: `l + 64 <= 256`: inside `dec.q` and `a` (256 values, see `Isa::int_dot`).
    let (w, a) = unsafe {
        (
            _mm512_loadu_si512(dec.q.as_ptr().add(l) as *const _),
            _mm512_loadu_si512(a.as_ptr().add(l) as *const _),
        )
    };
    let neg = _mm512_movepi8_mask(w);
    (
        _mm512_abs_epi8(w),
        _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a),
    )
}

impl<const VNNI: bool> Isa for Avx512<VNNI> {
    type Acc = __m512;

    fn zero() -> __m512 {
        // SAFETY: the all-zero bit pattern is a valid `__m512` (sixteen 0.0).
        unsafe { std::mem::zeroed() }
    }

    #[inline(always)]
    unsafe fn exact<const R: usize>(
        dec: &Decoded,
        qk: usize,
        x: [&[f32]; R],
        acc: &mut [__m512; R],
    ) {
        for t in 0..qk / 16 {
            let (fd, fo) = dec.factors(t);
            // SAFETY: `16t + 16 <= qk <= 256 = dec.q.len()`.
            let q = unsafe { _mm_loadu_si128(dec.q.as_ptr().add(16 * t) as *const __m128i) };
            let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
            let w = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(fd), q), _mm512_set1_ps(fo));
            for r in 0..R {
                assert!(16 * t + 16 <= x[r].len());
                // SAFETY: checked just above.
                let xv = unsafe { _mm512_loadu_ps(x[r].as_ptr().add(16 * t)) };
                acc[r] = _mm512_fmadd_ps(w, xv, acc[r]);
            }
        }
    }

    #[inline(always)]
    unsafe fn hsum(acc: __m512) -> f32 {
        _mm512_reduce_add_ps(acc)
    }

    #[inline(always)]
    unsafe fn int_dot(dec: &Decoded, qk: usize, a: &[i8]) -> i32 {
        if qk != 256 {
            // SAFETY: the AVX-512 paths run with AVX2.
            return unsafe { Avx2::int_dot(dec, qk, a) };
        }
        assert!(a.len() >= 256);
        // SAFETY: `dec.sc` holds 16 i16.
        let sc16 = unsafe { _mm256_loadu_si256(dec.sc.as_ptr() as *const __m256i) };
        let mut acc = _mm512_setzero_si512();
        for c in 0..4 {
            // SAFETY: `64c + 64 <= 256 <= a.len()` (asserted above).
            let (w, av) = unsafe { signed_pair(dec, a, 64 * c) };
            let s = 4 * c as i32;
            let prod = if VNNI {
                // i32 lane k holds values 4k..4k+4: sub-block 4c + k/4.
                let idx = _mm512_add_epi32(
                    _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                    _mm512_set1_epi32(s),
                );
                let sc = _mm512_permutexvar_epi32(idx, _mm512_cvtepi16_epi32(sc16));
                _mm512_mullo_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w, av), sc)
            } else {
                // i16 lane k holds values 2k, 2k+1: sub-block 4c + k/8.
                let idx = _mm512_add_epi16(
                    _mm512_set_epi64(
                        0x0003_0003_0003_0003,
                        0x0003_0003_0003_0003,
                        0x0002_0002_0002_0002,
                        0x0002_0002_0002_0002,
                        0x0001_0001_0001_0001,
                        0x0001_0001_0001_0001,
                        0,
                        0,
                    ),
                    _mm512_set1_epi16(s as i16),
                );
                let sc = _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16));
                _mm512_madd_epi16(_mm512_maddubs_epi16(w, av), sc)
            };
            acc = _mm512_add_epi32(acc, prod);
        }
        _mm512_reduce_add_epi32(acc)
    }

    #[inline(always)]
    unsafe fn block_exact<F: Format, const R: usize>(
        b: &[u8],
        dec: &mut Decoded,
        x: [&[f32]; R],
        acc: &mut [__m512; R],
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
            let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
            for (h, half) in halves.into_iter().enumerate() {
                let t = 2 * c + h;
                let (fd, fo) = dec.factors(t);
                let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(half));
                let w = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(fd), q), _mm512_set1_ps(fo));
                for r in 0..R {
                    assert!(16 * t + 16 <= x[r].len());
                    // SAFETY: checked just above.
                    let xv = unsafe { _mm512_loadu_ps(x[r].as_ptr().add(16 * t)) };
                    acc[r] = _mm512_fmadd_ps(w, xv, acc[r]);
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
        // SAFETY: the CPU has AVX2 (and AVX-512VL + VNNI for `VNNI`), forwarded from the caller.
        unsafe { unpack::block_isums::<F, Self, VNNI, R>(b, dec, a) }
    }

    #[inline(always)]
    unsafe fn fast_rows<F: Format>(
        a: &ActQ8,
        i: usize,
        w: [&[u8]; ROWS],
        dec: &mut Decoded,
    ) -> [f32; ROWS] {
        // SAFETY: forwarded from the caller.
        unsafe { avx2::fast_rows::<F, Self>(a, i, w, dec) }
    }
}
