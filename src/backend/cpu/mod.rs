//! CPU kernels for the decoder's op set, in f32 activations with f32 accumulation (`exact` mode;
//! `fast` rounds matmul activations to bf16 where the CPU has bf16 dot products).
//!
//! Weights are read in their stored dtype (f32, f16, bf16, or ggml blocks, which [`quant`]
//! multiplies) straight from the mmap; each dot product converts on the fly. Work is split across the rayon pool when it is large enough to pay for it.
//! The `dot_*` functions here are the scalar reference the SIMD matmul paths in [`simd`] are tested
//! against; [`matmul`] dispatches to the path chosen at run time.

use half::{bf16, f16};

use crate::backend::{Weight, WeightData};

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
pub mod attention;
#[cfg(target_arch = "x86_64")]
mod bcast;
pub mod compute;
pub mod gemm;
pub mod kv_half;
pub mod memory;
pub mod quant;
pub mod rand;
pub mod simd;
pub(crate) mod team;

pub use attention::{attention, AttnSeq, AttnShape};
pub use compute::{kv_dtype, Compute};
pub use kv_half::{attention_kv, KvDtype, KvRows};
pub use simd::{kernel, precision, set_kernel, set_precision, Kernel, Precision};
pub(crate) use team::{broadcast, par_chunks_mut, par_for};

/// Below this many multiply-adds a matmul stays on the calling thread.
const PAR_THRESHOLD: usize = 1 << 16;

/// Dot product of an f32 activation row with an f32 weight row (8 independent accumulators so the
/// compiler vectorizes it and rounding does not grow with length).
#[inline]
pub fn dot_f32(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, xr) = x.split_at(x.len() - x.len() % 8);
    let (wc, wr) = w.split_at(xc.len());
    for (a, b) in xc.chunks_exact(8).zip(wc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (a, b) in xr.iter().zip(wr) {
        s += a * b;
    }
    s
}

/// Dot product with a bf16 weight row (bf16 -> f32 is a 16-bit shift).
#[inline]
pub fn dot_bf16(x: &[f32], w: &[bf16]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, xr) = x.split_at(x.len() - x.len() % 8);
    let (wc, wr) = w.split_at(xc.len());
    for (a, b) in xc.chunks_exact(8).zip(wc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += a[i] * f32::from_bits((b[i].to_bits() as u32) << 16);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (a, b) in xr.iter().zip(wr) {
        s += a * b.to_f32();
    }
    s
}

/// Dot product with an f16 weight row, converted in blocks with half's vectorized conversion.
#[inline]
pub fn dot_f16(x: &[f32], w: &[f16]) -> f32 {
    use half::slice::HalfFloatSliceExt;
    let mut buf = [0f32; 64];
    let mut s = 0f32;
    for (xb, wb) in x.chunks(64).zip(w.chunks(64)) {
        let b = &mut buf[..wb.len()];
        wb.convert_to_f32_slice(b);
        s += dot_f32(xb, b);
    }
    s
}

/// `out[i, col0 + j] = sum_k x[i, k] * w[j, k]` for `i < m`, `j < n` where `w` is `[n, k]`;
/// `out` has row stride `ld`. This is `x @ w.T`, the layout of every HF linear layer.
///
/// Runs on the path [`kernel`] selects (see [`simd`]); each element's arithmetic is independent of
/// `m` and of the other rows. In [`Precision::Fast`] on the `avx512bf16` and `amx` paths with bf16
/// weights the activations are rounded to bf16 first (a per-thread scratch buffer, reused across
/// calls). On `amx`, bf16 weights run on AMX tiles at every `m`, in `exact` with each f32
/// activation split into three bf16 terms (see `amx.rs`).
pub fn matmul(x: &[f32], m: usize, w: &Weight, out: &mut [f32], ld: usize, col0: usize) {
    matmul_with(kernel(), precision(), x, m, w, out, ld, col0)
}

/// [`matmul`] of one input against several weights whose outputs lie side by side from column
/// `col0` (q|k|v from three tensors, say). On `amx` with bf16 weights the activations are packed
/// once and all the weights' tasks share one parallel section; elsewhere it is one [`matmul`] per
/// weight. Either way each output element is computed as [`matmul`] computes it.
///
/// Quantized weights in `fast` precision share one quantization of the activations among the
/// consecutive parts whose format quantizes them alike (block length) and whose widths agree.
pub fn matmul_parts(x: &[f32], m: usize, ws: &[Weight], out: &mut [f32], ld: usize, col0: usize) {
    let (kern, prec) = (kernel(), precision());
    if prec == Precision::Fast && ws.iter().all(Weight::is_quantized) {
        return quant_parts(kern, x, m, ws, out, ld, col0);
    }
    #[cfg(target_arch = "x86_64")]
    if kern == Kernel::Amx && (2..=4).contains(&ws.len()) && m > 0 {
        let k = ws[0].shape[1];
        let empty = || amx::Mat {
            w: std::ptr::null(),
            n: 0,
            out: std::ptr::null_mut(),
        };
        let mut mats = [empty(), empty(), empty(), empty()];
        let mut cols = [0usize; 4];
        let mut col = col0;
        let mut fits = k.is_multiple_of(amx::KB);
        for ((w, mat), c) in ws.iter().zip(&mut mats).zip(&mut cols) {
            match w.data() {
                WeightData::BF16(v) if fits && w.shape[1] == k && v.len() >= w.shape[0] * k => {
                    (mat.w, mat.n, *c) = (v.as_ptr(), w.shape[0], col);
                    col += w.shape[0];
                }
                _ => fits = false,
            }
        }
        if fits {
            assert!(x.len() >= m * k && col <= ld && out.len() >= (m - 1) * ld + col);
            for (mat, &c) in mats.iter_mut().zip(&cols) {
                // SAFETY: column `c <= col <= ld` of output row 0 lies inside `out` (asserted).
                mat.out = unsafe { out.as_mut_ptr().add(c) };
            }
            let parts = if prec == Precision::Exact { 3 } else { 1 };
            // SAFETY: the path is available, so AMX is; each weight holds `n * k` elements
            // (checked above); the weights' output columns are disjoint and lie inside `out`
            // for `m` rows at stride `ld` (asserted), which is borrowed mutably for the call.
            unsafe { amx::matmul(x, m, k, &mats[..ws.len()], ld, parts) };
            return;
        }
    }
    let mut col = col0;
    for w in ws {
        matmul_with(kern, prec, x, m, w, out, ld, col);
        col += w.shape[0];
    }
}

/// [`matmul`] on a given path and precision (`kern` must be available on this CPU).
///
/// Longer than 100 lines on purpose: one match over (kernel, dtype) names every monomorphized
/// block, widen and broadcast-GEMM function in one table; the `go!` macro that builds each path's
/// job needs this function's locals.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    kern: Kernel,
    prec: Precision,
    x: &[f32],
    m: usize,
    w: &Weight,
    out: &mut [f32],
    ld: usize,
    col0: usize,
) {
    assert!(kern.available(), "kernel {} unavailable", kern.name());
    let (n, k) = (w.shape[0], w.shape[1]);
    assert!(x.len() >= m * k && col0 + n <= ld && out.len() >= m.saturating_sub(1) * ld + col0 + n);
    if m == 0 || n == 0 {
        return;
    }
    if let WeightData::Quant(q) = w.data() {
        return quant_one(kern, prec, &q, &x[..m * k], m, &mut out[col0..], ld);
    }
    let out = out[col0..].as_mut_ptr();
    // `go!(weights, block[, packed block, widen[, broadcast GEMM on the widened chunk]])`, or
    // `go!(@bcast weights, block, broadcast GEMM)` for a path with one on the stored weights.
    macro_rules! go {
        ($v:expr, $f:expr) => {
            go!(@run $v, $f, None, None)
        };
        (@bcast $v:expr, $f:expr, $b:expr) => {
            go!(@run $v, $f, None, $b)
        };
        ($v:expr, $f:expr, $packed:ident, $widen:ident) => {
            go!($v, $f, $packed, $widen, None)
        };
        ($v:expr, $f:expr, $packed:ident, $widen:ident, $bc:expr) => {
            go!(
                @run
                $v,
                $f,
                Some(simd::Packed {
                    block: $packed,
                    widen: simd::$widen,
                }),
                $bc
            )
        };
        (@run $v:expr, $f:expr, $p:expr, $b:expr) => {{
            let v = $v;
            assert!(v.len() >= n * k);
            let job = simd::Job::new(x.as_ptr(), m, k, (v.as_ptr(), n), out, ld);
            simd::run_job(&job, n, $f, $p, $b)
        }};
    }
    match (kern, w.data()) {
        (_, WeightData::Quant(_)) => unreachable!("quantized weights are matched first"),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Amx, WeightData::BF16(v)) if k.is_multiple_of(amx::KB) => {
            let parts = if prec == Precision::Exact { 3 } else { 1 };
            assert!(v.len() >= n * k);
            let mat = amx::Mat {
                w: v.as_ptr(),
                n,
                out,
            };
            // SAFETY: the path is available (asserted above), so AMX is; `w` holds `n * k`
            // elements and `out` covers `m` rows of `n` columns at stride `ld` (asserted above),
            // borrowed mutably for the call.
            unsafe { amx::matmul(x, m, k, &[mat], ld, parts) }
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512Bf16 | Kernel::Amx, WeightData::BF16(v)) if prec == Precision::Fast => {
            with_scratch(&FAST_X, |buf| {
                let buf = aligned(buf, m * k, 1 << 15);
                to_bf16(&x[..m * k], k, buf);
                assert!(v.len() >= n * k);
                let job = simd::Job::new(buf.as_ptr(), m, k, (v.as_ptr(), n), out, ld);
                simd::run_job(
                    &job,
                    n,
                    simd::x86::block_avx512bf16::<simd::x86::DpBf16>,
                    None,
                    Some(simd::Bcast {
                        gemm: simd::x86::gemm_avx512bf16::<simd::x86::DpBf16, bcast::Raw<bf16>>,
                        pack_x: bcast::pack_x::<bcast::Raw<bf16>>,
                        step: 32,
                    }),
                )
            })
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::Amx, d) => {
            use simd::x86::{gemm_avx512, Avx512F32};
            let f32s = simd::x86::block_avx512::<Avx512F32>;
            // The broadcast GEMM with f32 activations, reading weights of `S`.
            fn gemm<S: bcast::Src>(_: Kernel) -> Option<simd::Bcast<f32, S::T>> {
                Some(simd::Bcast {
                    gemm: gemm_avx512::<Avx512F32, S>,
                    pack_x: bcast::pack_x::<bcast::Raw<f32>>,
                    step: 16,
                })
            }
            match d {
                WeightData::F32(v) => go!(@bcast v, f32s, gemm::<bcast::Raw<f32>>(kern)),
                WeightData::BF16(v) => go!(
                    v,
                    simd::x86::block_avx512::<simd::x86::Avx512Bf16W>,
                    f32s,
                    widen_bf16,
                    gemm::<bcast::WideBf16>(kern)
                ),
                WeightData::F16(v) => go!(
                    v,
                    simd::x86::block_avx512::<simd::x86::Avx512F16>,
                    f32s,
                    widen_f16,
                    gemm::<bcast::WideF16>(kern)
                ),
                WeightData::Quant(_) => unreachable!("quantized weights are matched first"),
            }
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, d) => {
            let f32s = simd::x86::block_avx2::<simd::x86::Avx2F32>;
            match d {
                WeightData::F32(v) => go!(v, f32s),
                WeightData::BF16(v) => go!(
                    v,
                    simd::x86::block_avx2::<simd::x86::Avx2Bf16>,
                    f32s,
                    widen_bf16
                ),
                WeightData::F16(v) => go!(
                    v,
                    simd::x86::block_avx2::<simd::x86::Avx2F16>,
                    f32s,
                    widen_f16
                ),
                WeightData::Quant(_) => unreachable!("quantized weights are matched first"),
            }
        }
        #[cfg(target_arch = "aarch64")]
        (Kernel::Neon, WeightData::F32(v)) => go!(v, simd::arm::block_neon::<simd::arm::NeonF32>),
        #[cfg(target_arch = "aarch64")]
        (Kernel::Neon, WeightData::BF16(v)) => {
            let f32s = simd::arm::block_neon::<simd::arm::NeonF32>;
            go!(
                v,
                simd::arm::block_neon::<simd::arm::NeonBf16>,
                f32s,
                widen_bf16
            )
        }
        (_, WeightData::F32(v)) => go!(v, simd::block_scalar::<f32>),
        (_, WeightData::BF16(v)) => go!(v, simd::block_scalar::<bf16>),
        (_, WeightData::F16(v)) => go!(v, simd::block_scalar::<f16>),
    }
}

/// [`matmul_with`] on a quantized matrix: `out[i * ld + j]` for `j < q.rows`.
fn quant_one(
    kern: Kernel,
    prec: Precision,
    q: &quant::QuantMatrix,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    ld: usize,
) {
    let run = quant_run(kern, prec, m * q.rows * q.cols);
    let res = match prec {
        Precision::Exact => quant::matmul(q, x, m, out, ld, run),
        Precision::Fast => with_scratch(&ACT_Q8, |a| {
            if a.is_empty() {
                a.push(quant::ActQ8::default());
            }
            a[0].requantize(q.format, x, m, q.cols);
            quant::matmul_q8(q, &a[0], out, ld, run)
        }),
    };
    // The callers assert the shapes, so the quantized matmul accepts them.
    res.unwrap_or_else(|e| unreachable!("quantized matmul: {e}"))
}

/// How a quantized matmul of `work` multiply-adds runs for matmul kernel `kern`.
fn quant_run(kern: Kernel, precision: Precision, work: usize) -> quant::QuantRun {
    quant::QuantRun {
        precision,
        // `kern` is available (asserted by the callers), so its path is.
        path: quant::QuantPath::for_kernel(kern).unwrap_or(quant::QuantPath::Scalar),
        threaded: work >= PAR_THRESHOLD,
    }
}

/// [`matmul_parts`] for quantized weights in `fast` precision: the activations are quantized once
/// per distinct block length and width among the parts (q, k and v share one), then all parts run
/// through [`quant::matmul_q8_parts`] (one parallel section at batch 1), so every output element is
/// what [`matmul_with`] computes.
fn quant_parts(
    kern: Kernel,
    x: &[f32],
    m: usize,
    ws: &[Weight],
    out: &mut [f32],
    ld: usize,
    col0: usize,
) {
    assert!(kern.available(), "kernel {} unavailable", kern.name());
    let n_all: usize = ws.iter().map(|w| w.shape[0]).sum();
    assert!(col0 + n_all <= ld && out.len() >= m.saturating_sub(1) * ld + col0 + n_all);
    if m == 0 {
        return;
    }
    fn quantized(w: &Weight) -> quant::QuantMatrix<'_> {
        match w.data() {
            WeightData::Quant(q) => q,
            _ => unreachable!("quant_parts takes quantized weights only"),
        }
    }
    // Up to `MAX_PARTS` at a time, in arrays (the decode step allocates nothing).
    let mut col = col0;
    for ws in ws.chunks(quant::MAX_PARTS) {
        with_scratch(&ACT_Q8, |acts| {
            // Which quantization each part reads; `acts[..used]` are this call's.
            let (mut used, mut which) = (0, [0usize; quant::MAX_PARTS]);
            for (k, w) in ws.iter().enumerate() {
                let q = quantized(w);
                assert!(x.len() >= m * q.cols);
                let i = acts[..used]
                    .iter()
                    .position(|a| a.check(q.format, q.cols).is_ok());
                which[k] = i.unwrap_or_else(|| {
                    if acts.len() == used {
                        acts.push(quant::ActQ8::default());
                    }
                    acts[used].requantize(q.format, &x[..m * q.cols], m, q.cols);
                    used += 1;
                    used - 1
                });
            }
            let first = quant::Part {
                w: quantized(&ws[0]),
                a: &acts[which[0]],
                col,
            };
            let mut parts = [first; quant::MAX_PARTS];
            let mut work = 0;
            for (k, w) in ws.iter().enumerate() {
                let q = quantized(w);
                parts[k] = quant::Part {
                    w: q,
                    a: &acts[which[k]],
                    col,
                };
                col += q.rows;
                work += m * q.rows * q.cols;
            }
            let run = quant_run(kern, Precision::Fast, work);
            quant::matmul_q8_parts(&parts[..ws.len()], out, ld, run)
                .unwrap_or_else(|e| unreachable!("quantized matmul: {e}"))
        })
    }
}

/// Runs `f` on this thread's scratch value in `key`, or on a fresh one when the thread is already
/// using it. Needed for scratch held across a parallel section: a thread waiting in a rayon join
/// runs other tasks meanwhile (work stealing), and one of them may be another forward pass, if the
/// caller runs several on the pool at once.
pub(crate) fn with_scratch<T: Default + 'static, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut T::default()),
    })
}

/// `len` elements of `buf` from its first 64-byte boundary (a cache line; one AVX-512 vector), growing
/// `buf` (in steps of `step` elements) as needed. Rows of activations and widened weights whose
/// width in bytes is a multiple of 64 then start on cache lines, so no vector load of theirs
/// straddles two lines.
/// The contents are unspecified: callers write before they read.
pub(crate) fn aligned<T: Copy + Default>(buf: &mut Vec<T>, len: usize, step: usize) -> &mut [T] {
    let slack = 64 / std::mem::size_of::<T>().max(1);
    if buf.len() < len + slack {
        buf.resize((len + slack).next_multiple_of(step.max(1)), T::default());
    }
    let off = match buf.as_ptr().align_offset(64) {
        o if o < slack => o,
        _ => 0,
    };
    &mut buf[off..off + len]
}

/// `x` rounded to bf16 as `bf16::from_f32` rounds (to nearest even; NaN stays NaN), 16 at a time
/// on AVX-512; rows of `k` split across the pool from [`PAR_ROWS`] rows.
pub(crate) fn to_bf16(x: &[f32], k: usize, out: &mut [bf16]) {
    fn rows(x: &[f32], out: &mut [bf16]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above).
            return unsafe { to_bf16_avx512(x, out) };
        }
        for (b, &a) in out.iter_mut().zip(x) {
            *b = bf16::from_f32(a);
        }
    }
    let k = k.max(1);
    if x.len() / k >= PAR_ROWS {
        // Blocks of 8 rows: enough work per task to pay for handing it out.
        let rows_per = 8 * k;
        par_chunks_mut(&mut out[..x.len()], rows_per, |c, o| {
            rows(&x[c * rows_per..c * rows_per + o.len()], o)
        });
    } else {
        rows(x, &mut out[..x.len()]);
    }
}

/// [`to_bf16`]'s vector loop: per lane, the NaN test and the round-to-nearest-even increment of
/// `half::bf16::from_f32`, in integer arithmetic on the bits.
///
/// # Safety
/// The CPU supports AVX-512F; `out` is at least as long as `x`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn to_bf16_avx512(x: &[f32], out: &mut [half::bf16]) {
    use std::arch::x86_64::*;
    let n = x.len() - x.len() % 16;
    let (abs, inf) = (
        _mm512_set1_epi32(0x7FFF_FFFF),
        _mm512_set1_epi32(0x7F80_0000),
    );
    let (round, sticky, one) = (
        _mm512_set1_epi32(0x8000),
        _mm512_set1_epi32(0x1_7FFF),
        _mm512_set1_epi32(1),
    );
    let quiet = _mm512_set1_epi32(0x40);
    let mut i = 0;
    while i < n {
        let b = _mm512_loadu_si512(x.as_ptr().add(i) as *const _);
        let hi = _mm512_srli_epi32::<16>(b);
        let nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, abs), inf);
        let up = _mm512_test_epi32_mask(b, round) & _mm512_test_epi32_mask(b, sticky);
        let r = _mm512_mask_add_epi32(hi, up, hi, one);
        let r = _mm512_mask_or_epi32(r, nan, hi, quiet);
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut _, _mm512_cvtepi32_epi16(r));
        i += 16;
    }
    for (b, &a) in out[n..].iter_mut().zip(&x[n..]) {
        *b = half::bf16::from_f32(a);
    }
}

thread_local! {
    /// bf16 copy of the activations in `fast` precision (grows to the largest `m * k`, then reused).
    static FAST_X: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The activations quantized for `fast` matmuls on quantized weights, one per distinct
    /// quantization a [`matmul_parts`] call needs (buffers reused).
    static ACT_Q8: std::cell::RefCell<Vec<quant::ActQ8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows from which the row-wise elementwise ops (RMSNorm, SiLU-mul, residual adds) split their rows
/// across the pool (a prefill's worth; a decode step's few rows stay on the calling thread unless
/// they hold [`PAR_ELEMS`]). Each row's arithmetic is the same either way.
const PAR_ROWS: usize = 64;

/// Elements from which [`for_rows`] splits fewer than [`PAR_ROWS`] rows: the SiLU-mul of a 32-row
/// decode step (32 x 4864 for Qwen2.5-0.5B), not its RMSNorms or residual adds (32 x 896).
const PAR_ELEMS: usize = 1 << 17;

/// Runs `f` on every pair of matching `a` and `b` rows (widths `da`, `db`), on the pool from
/// `PAR_ROWS` (64) rows, or from 8 rows holding `PAR_ELEMS` elements.
pub fn for_rows<A: Send, B: Sync>(
    a: &mut [A],
    da: usize,
    b: &[B],
    db: usize,
    f: impl Fn(&mut [A], &[B]) + Sync,
) {
    let rows = a.len() / da.max(1);
    if rows >= PAR_ROWS || (rows > 8 && a.len() >= PAR_ELEMS) {
        // Eight rows per task.
        par_chunks_mut(a, 8 * da, |c, ac| {
            let b = &b[c * 8 * db..];
            ac.chunks_exact_mut(da)
                .zip(b.chunks_exact(db))
                .for_each(|(ar, br)| f(ar, br));
        });
    } else {
        a.chunks_exact_mut(da)
            .zip(b.chunks_exact(db))
            .for_each(|(ar, br)| f(ar, br));
    }
}

/// RMSNorm over rows of width `w.len()`: `out = x / sqrt(mean(x^2) + eps) * w`, as HF computes it in f32.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for_rows(out, d, x, d, |or, xr| {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = g * (v * inv);
        }
    })
}

/// Rotary embedding in HF's "rotate half" convention on rows `[n_heads * head_dim]`, rotating the
/// first `2 * inv_freq.len()` dims of each head at position `pos`.
/// No allocation for up to 128 frequencies (head dims up to 256): callers run it once per row.
pub fn rope(row: &mut [f32], n_heads: usize, head_dim: usize, inv_freq: &[f32], pos: usize) {
    let mut stack = [(0f32, 0f32); 128];
    let mut heap = Vec::new();
    let sc = if inv_freq.len() <= stack.len() {
        &mut stack[..inv_freq.len()]
    } else {
        heap.resize(inv_freq.len(), (0f32, 0f32));
        &mut heap[..]
    };
    rope_angles(inv_freq, pos, sc);
    rope_rotate(row, n_heads, head_dim, sc);
}

/// `(sin, cos)` of `pos * inv_freq[i]` for every frequency: one position's rotation, shared by
/// its query and key rows and by every layer.
pub fn rope_angles(inv_freq: &[f32], pos: usize, out: &mut [(f32, f32)]) {
    for (o, &f) in out.iter_mut().zip(inv_freq) {
        *o = (pos as f32 * f).sin_cos();
    }
}

/// [`rope`] with the position's `(sin, cos)` pairs from [`rope_angles`].
pub fn rope_rotate(row: &mut [f32], n_heads: usize, head_dim: usize, sc: &[(f32, f32)]) {
    let half = sc.len();
    for (i, &(sin, cos)) in sc.iter().enumerate() {
        for h in 0..n_heads {
            let base = h * head_dim;
            let a = row[base + i];
            let b = row[base + i + half];
            row[base + i] = a * cos - b * sin;
            row[base + i + half] = b * cos + a * sin;
        }
    }
}

/// `gate = silu(gate) * up`, in place on `gate` (AVX2 with a vector `exp` where the path allows).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if kernel().has_avx2_fma() {
        // SAFETY: those paths are only selected on CPUs with AVX2 and FMA.
        return unsafe { silu_mul_avx2(gate, up) };
    }
    silu_mul_scalar(gate, up)
}

/// Scalar reference of [`silu_mul`].
pub fn silu_mul_scalar(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(gate: &mut [f32], up: &[f32]) {
    use std::arch::x86_64::*;
    let n = gate.len().min(up.len());
    let main = n - n % 8;
    let one = _mm256_set1_ps(1.0);
    for i in (0..main).step_by(8) {
        // SAFETY: `i + 8 <= n` elements of both slices.
        let g = _mm256_loadu_ps(gate.as_ptr().add(i));
        let u = _mm256_loadu_ps(up.as_ptr().add(i));
        let e = attention::x86::exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        let r = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
        _mm256_storeu_ps(gate.as_mut_ptr().add(i), r);
    }
    silu_mul_scalar(&mut gate[main..n], &up[main..n]);
}

/// `x += y`.
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// In-place numerically stable softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    /// The vector rounding to bf16 against `half`'s, bit for bit: ties both ways, values that
    /// round up into the next binade and to infinity, NaNs, infinities, zeros and denormals.
    #[test]
    fn to_bf16_matches_half() {
        let mut x: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            f32::from_bits(0x3F80_8000), // tie, even below: stays
            f32::from_bits(0x3F81_8000), // tie, odd below: rounds up
            f32::from_bits(0x3F80_8001),
            f32::from_bits(0x3FFF_FFFF), // rounds into the next binade
            f32::MAX,                    // rounds to infinity
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7F80_0001), // signalling NaN: made quiet
            f32::from_bits(0xFFC1_2345),
            f32::from_bits(0x0000_8000), // denormals
            f32::from_bits(0x0001_8000),
            f32::from_bits(0x807F_FFFF),
        ];
        x.extend(super::rand::rand_vec(1000, 9).iter().map(|v| v * 1e3));
        x.extend((0..4000u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761))));
        let mut got = vec![half::bf16::ZERO; x.len()];
        super::to_bf16(&x, 7, &mut got);
        for (i, (g, &v)) in got.iter().zip(&x).enumerate() {
            let want = half::bf16::from_f32(v);
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "[{i}] {v:e} ({:#x})",
                v.to_bits()
            );
        }
    }

    use super::*;

    fn naive_dot(x: &[f32], w: &[f32]) -> f64 {
        x.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum()
    }

    #[test]
    fn dots_match_f64_reference() {
        let x: Vec<f32> = (0..203)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..203)
            .map(|i| ((i * 11 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let wbf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let whf: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
        assert!((dot_f32(&x, &w) as f64 - naive_dot(&x, &w)).abs() < 1e-4);
        assert!((dot_bf16(&x, &wb) as f64 - naive_dot(&x, &wbf)).abs() < 1e-4);
        assert!((dot_f16(&x, &wh) as f64 - naive_dot(&x, &whf)).abs() < 1e-4);
    }

    #[test]
    fn silu_mul_matches_scalar_reference() {
        let g: Vec<f32> = (0..203).map(|i| (i as f32 - 100.0) * 0.37).collect();
        let u: Vec<f32> = (0..203)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0)
            .collect();
        let mut want = g.clone();
        silu_mul_scalar(&mut want, &u);
        let mut got = g.clone();
        silu_mul(&mut got, &u);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "[{i}] {a} vs {b}");
        }
    }

    #[test]
    fn matmul_paths_agree() {
        let (m, n, k) = (5, 300, 70);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 19) as f32 - 9.0) / 9.0)
            .collect();
        let wv: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 23) as f32 - 11.0) / 11.0)
            .collect();
        let w = Weight::from_f32(&wv, vec![n, k]);
        let mut out = vec![0f32; m * (n + 3)];
        matmul(&x, m, &w, &mut out, n + 3, 2);
        for i in 0..m {
            for j in 0..n {
                let r = naive_dot(&x[i * k..(i + 1) * k], &wv[j * k..(j + 1) * k]);
                assert!((out[i * (n + 3) + 2 + j] as f64 - r).abs() < 1e-4);
            }
            let mut single = vec![0f32; n];
            matmul(&x[i * k..(i + 1) * k], 1, &w, &mut single, n, 0);
            assert_eq!(&single[..], &out[i * (n + 3) + 2..i * (n + 3) + 2 + n]);
        }
    }
}

/// The dispatch of quantized weights: [`matmul_parts`] and [`matmul_with`] against
/// [`quant::matmul`] called directly, and the quantized [`Weight`]'s f32 views against
/// [`quant::dequantize`].
#[cfg(test)]
mod quant_dispatch_tests {
    use super::quant::{self, QuantFormat};
    use super::*;
    use crate::backend::DType;

    /// `rows` x `cols` random blocks of `f` (Q4_0, Q8_0: f16 scale at byte 0; Q4_K: d and dmin at
    /// bytes 0 and 2) with scales in +-0.05, so no scale is inf or NaN.
    fn random_weight(f: QuantFormat, rows: usize, cols: usize, seed: u64) -> Weight {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let bb = f.block_bytes();
        let mut bytes: Vec<u8> = (0..rows * cols / f.block_values() * bb)
            .map(|_| next() as u8)
            .collect();
        let fields: &[usize] = if f == QuantFormat::Q4K { &[0, 2] } else { &[0] };
        for blk in bytes.chunks_exact_mut(bb) {
            for &o in fields {
                let v = (next() % 1000) as f32 / 1000.0 * 0.1 - 0.05;
                blk[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
        Weight::from_bytes(&bytes, DType::Quant(f), vec![rows, cols])
    }

    fn quantized(w: &Weight) -> quant::QuantMatrix<'_> {
        match w.data() {
            WeightData::Quant(q) => q,
            _ => panic!("not quantized"),
        }
    }

    #[test]
    fn parts_and_single_matmuls_equal_quant_matmul() {
        let k = 256;
        // Q4_0 and Q8_0 share one activation quantization (32-value blocks); Q4_K needs its own,
        // and the Q4_0 after it a fresh one again.
        let ws = [
            random_weight(QuantFormat::Q4_0, 24, k, 1),
            random_weight(QuantFormat::Q8_0, 8, k, 2),
            random_weight(QuantFormat::Q4K, 16, k, 3),
            random_weight(QuantFormat::Q4_0, 8, k, 4),
        ];
        let n: usize = ws.iter().map(|w| w.shape[0]).sum();
        let ld = n + 5;
        let kern = kernel();
        for prec in [Precision::Exact, Precision::Fast] {
            for m in [1, 3, 6] {
                let x: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                    .collect();
                let mut got = vec![-7f32; m * ld];
                simd::with_precision(prec, || matmul_parts(&x, m, &ws, &mut got, ld, 2));
                let mut want = vec![-7f32; m * ld];
                let mut single = vec![-7f32; m * ld];
                let mut col = 2;
                for w in &ws {
                    let run = quant::QuantRun {
                        precision: prec,
                        path: quant::QuantPath::for_kernel(kern).unwrap(),
                        threaded: false,
                    };
                    quant::matmul(&quantized(w), &x, m, &mut want[col..], ld, run).unwrap();
                    matmul_with(kern, prec, &x, m, w, &mut single, ld, col);
                    col += w.shape[0];
                }
                assert_eq!(got, want, "{prec:?}, m = {m}: matmul_parts");
                assert_eq!(single, want, "{prec:?}, m = {m}: matmul_with");
            }
        }
    }

    #[test]
    fn quantized_weight_f32_views_equal_dequantize() {
        for f in [QuantFormat::Q8_0, QuantFormat::Q4K] {
            let w = random_weight(f, 6, 512, 9);
            let mut want = vec![0f32; 6 * 512];
            quant::dequantize(f, w.raw(), &mut want).unwrap();
            assert_eq!(w.to_f32_vec(), want);
            assert_eq!(w.to_f32_weight().to_f32_vec(), want);
            let mut row = vec![0f32; 512];
            w.row_to_f32(4, &mut row);
            assert_eq!(row, want[4 * 512..5 * 512]);
            assert_eq!(w.get_f32(3 * 512 + 300), want[3 * 512 + 300]);
        }
    }
}
