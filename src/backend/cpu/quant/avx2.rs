//! The AVX2+FMA path of the quantized matmuls: blocks unpacked in registers ([`super::unpack`]);
//! `exact` in 8 f32 lanes, `fast` by `vpmaddubsw` with the sign trick, scaled per 16 values by
//! `vpmaddwd`. Q2_K and Q3_K go through the decoder and the primitives below, as do the 32-value
//! block dots of the AVX-512 path without an unpacker.

use std::arch::x86_64::*;

use super::blocks::{Decoded, Format};
use super::unpack::{self, hsum_i32};
use super::{ActQ8, Isa, Job, ROWS};

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

    #[inline(always)]
    unsafe fn fast_rows<F: Format>(
        a: &ActQ8,
        i: usize,
        w: [&[u8]; ROWS],
        dec: &mut Decoded,
    ) -> [f32; ROWS] {
        // SAFETY: forwarded from the caller.
        unsafe { fast_rows::<F, Self>(a, i, w, dec) }
    }
}

/// The sums of the lanes of each of `v`: lane `r` of the result is the sum of `v[r]` (three
/// `vphaddd` levels and one cross-lane add for all eight, instead of a reduction per vector).
#[inline(always)]
unsafe fn hsum8(v: [__m256i; ROWS]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Per 128-bit lane: the four-value sums of rows 0..4 (low lane: values 0..4, high: 4..8).
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let lo = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let hi = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(lo, hi)
}

/// [`Isa::fast_rows`] for the x86 paths (whose block dots are 256-bit vectors): per block, the
/// eight rows' integer sums reduced together ([`hsum8`], lane `r`: row `r`), then
/// `out += da * (d * isum - dmin * msum)` as 8-lane f32 multiplies, subtraction and add: in every
/// lane the operations of [`super::fast_tile`] in its order (no FMA), so the same floats, with no
/// horizontal sum or scalar tail per block and row.
///
/// # Safety
/// The CPU has the features of `K` (at least AVX2).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `r` indexes five parallel arrays
pub(super) unsafe fn fast_rows<F: Format, K: Isa<ISum = __m256i>>(
    a: &ActQ8,
    i: usize,
    w: [&[u8]; ROWS],
    dec: &mut Decoded,
) -> [f32; ROWS] {
    let nb = w[0].len() / F::BYTES;
    let mut out = _mm256_setzero_ps();
    // The next eight rows (consecutive in memory after these), fetched while these are computed:
    // eight rows walked block by block are eight interleaved streams the hardware prefetchers
    // follow poorly.
    let next = w[ROWS - 1].as_ptr().wrapping_add(w[0].len());
    for b in 0..nb {
        let span = ROWS * F::BYTES;
        for off in (b * span..(b + 1) * span).step_by(64) {
            // SAFETY: a prefetch is a hint and never faults; the address is not dereferenced.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(off) as *const i8) };
        }
        let (q, da, bsum) = a.block(i * nb + b);
        let mut v = [_mm256_setzero_si256(); ROWS];
        let (mut ms, mut d, mut dmin) = ([0i32; ROWS], [0f32; ROWS], [0f32; ROWS]);
        for r in 0..ROWS {
            let blk = &w[r][b * F::BYTES..(b + 1) * F::BYTES];
            // SAFETY: forwarded from the caller; `q` holds `QK` quants in -127..=127.
            let [(s, m)] = unsafe { K::block_isums::<F, 1>(blk, dec, [(q, bsum)]) };
            (v[r], ms[r], d[r], dmin[r]) = (s, m, dec.d, dec.dmin);
        }
        // SAFETY: forwarded from the caller.
        let isum = _mm256_cvtepi32_ps(unsafe { hsum8(v) });
        let msum = _mm256_cvtepi32_ps(_mm256_setr_epi32(
            ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], ms[6], ms[7],
        ));
        let d = _mm256_setr_ps(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
        let dmin = _mm256_setr_ps(
            dmin[0], dmin[1], dmin[2], dmin[3], dmin[4], dmin[5], dmin[6], dmin[7],
        );
        let t = _mm256_sub_ps(_mm256_mul_ps(d, isum), _mm256_mul_ps(dmin, msum));
        out = _mm256_add_ps(out, _mm256_mul_ps(_mm256_set1_ps(da), t));
    }
    let mut o = [0f32; ROWS];
    // SAFETY: `o` holds 8 f32.
    unsafe { _mm256_storeu_ps(o.as_mut_ptr(), out) };
    o
}
