//! Quantized matmuls with many activation rows (batched decode, prefill): panels of weight rows
//! unpacked once per call and reused by every activation row.
//!
//! - `exact`: a chunk of weight rows is dequantized to f32 (the decoder of [`super::dequantize`],
//!   so the weights equal the expanded ones bit for bit) into a per-thread buffer, and the dense f32
//!   kernels of [`simd`] run on it: the dot-product tiles below [`BCAST_MIN_M`] rows, the broadcast
//!   GEMM from there. Both compute every output element as the batch-1 quantized GEMV and the dense
//!   GEMV do (one 16- or 8-lane FMA accumulator along `k`, the same horizontal sum), so results do
//!   not depend on `m`.
//! - `fast` (AVX-512 VNNI): a panel of weight rows is unpacked into the int8 layout of
//!   [`super::panel`] and [`tile`] computes `R` activation rows x 16 weight rows at a time: per
//!   block, `vpdpbusd` sums with one activation quad broadcast per row land the k-reduction in the
//!   lane of each output column (no horizontal sums), then the same f32 expression as the scalar
//!   reference, `out += da * (d * isum - dmin * msum)`, block by block in order. The integer sums
//!   are exact, so the floats equal the batch-1 GEMV's bit for bit.
//!
//! [`simd`]: super::super::simd

use std::arch::x86_64::*;

use super::super::{bcast, simd};
use super::act::ActQ8;
use super::blocks::{self, Format};
use super::panel::{self, Layout};
use super::{dequantize_blocks, OutPtr, QuantFormat, QuantMatrix, QuantPath};

/// Activation rows from which an `exact` matmul runs through dequantized f32 chunks. Measured
/// (benches/quant.rs, `gemm`, 896x4864, the loaded 2-core Xeon): see the commit message.
pub(super) const EXACT_MIN_M: usize = 16;

/// Activation rows from which a `fast` matmul runs through int8 panels (see [`EXACT_MIN_M`]).
pub(super) const FAST_MIN_M: usize = 4;

/// Rows from which the dense f32 kernels run their broadcast GEMM (as `simd::run_job` does).
const BCAST_MIN_M: usize = 32;

/// Whether the panel GEMMs run (`RSTAR_QGEMM=0` turns them off, read once: for comparisons).
pub(super) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("RSTAR_QGEMM").map_or(true, |v| v != "0"))
}

thread_local! {
    /// A chunk of weight rows dequantized to f32 (grows to the largest, then reused).
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The inputs packed for the broadcast GEMM.
    static XPACK: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A panel of weight rows in the int8 layout (grows to the largest, then reused).
    static PANEL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The activations' 16-value sums as i16 pairs.
    static BSUM16: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `exact` `out[i * ld + j]` for weight rows `rows` of `w` (all of them when `par`, split over the
/// threads) on the dense f32 kernel of `path`. False when `path` has none (the scalar path).
pub(super) fn exact(
    path: QuantPath,
    w: &QuantMatrix,
    x: &[f32],
    m: usize,
    out: &OutPtr,
    ld: usize,
    par: bool,
) -> bool {
    if matches!(path, QuantPath::Scalar) || !enabled() {
        return false;
    }
    let k = w.cols;
    let bc = matches!(path, QuantPath::Avx512 { .. }) && m >= BCAST_MIN_M && k >= 16;
    let chunk = bcast::chunk(k);
    super::super::with_scratch(&XPACK, |xp| {
        let xp = if bc {
            let xp = super::super::aligned(xp, bcast::packed_len(m, k, 16), 1 << 14);
            // SAFETY: `x` holds `m * k` values; `xp` is as long as `packed_len` says; the AVX-512
            // path runs on a CPU with AVX-512F.
            unsafe { bcast::pack_x::<bcast::Raw<f32>>(x.as_ptr(), m, k, xp) };
            xp.as_ptr()
        } else {
            std::ptr::null()
        };
        let xp = SendPtr(xp);
        let one = |c: usize| {
            let (j0, j1) = (c * chunk, ((c + 1) * chunk).min(w.rows));
            exact_chunk(path, w, x, m, out, ld, (j0, j1), xp.get());
        };
        for_tasks(par, w.rows.div_ceil(chunk), one);
    });
    true
}

struct SendPtr(*const u32);
// SAFETY: the packed inputs are only read, and outlive the parallel section.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(&self) -> *const u32 {
        self.0
    }
}

/// Weight rows `j0..j1` of [`exact`]: dequantized into this thread's buffer, then the dense kernel.
#[allow(clippy::too_many_arguments)]
fn exact_chunk(
    path: QuantPath,
    w: &QuantMatrix,
    x: &[f32],
    m: usize,
    out: &OutPtr,
    ld: usize,
    (j0, j1): (usize, usize),
    xp: *const u32,
) {
    let (k, n, rb) = (w.cols, j1 - j0, w.row_bytes());
    super::super::with_scratch(&WIDE, |buf| {
        let buf = super::super::aligned(buf, n * k, 1 << 14);
        let src = &w.data[j0 * rb..j1 * rb];
        // SAFETY: every x86 path but the scalar one (excluded by `exact`) runs with AVX2 and F16C.
        unsafe { dequantize_avx2(w.format, src, buf) };
        assert!(j1 <= w.rows && (m - 1) * ld + w.rows <= out.len);
        // SAFETY: column `j0 < w.rows <= ld` of output row 0 lies inside `out` (asserted).
        let o = unsafe { out.ptr.add(j0) };
        let mut job = simd::Job::new(x.as_ptr(), m, k, (buf.as_ptr(), n), o, ld);
        job.xp = xp;
        // SAFETY: the job covers `m * k` inputs, the `n` rows of `k` weights in `buf` and output
        // columns `j0..j1` of `m` rows at stride `ld` (asserted above), which no other chunk
        // writes; the path's features are present (it was resolved from an available kernel);
        // `xp` holds the packed inputs where the broadcast GEMM runs.
        unsafe {
            match path {
                QuantPath::Avx512 { .. } if !xp.is_null() => {
                    simd::x86::gemm_avx512::<simd::x86::Avx512F32, bcast::Raw<f32>>(&job, 0, n)
                }
                QuantPath::Avx512 { .. } => {
                    simd::x86::block_avx512::<simd::x86::Avx512F32>(&job, 0, n)
                }
                _ => simd::x86::block_avx2::<simd::x86::Avx2F32>(&job, 0, n),
            }
        }
    })
}

/// [`super::dequantize`] compiled for AVX2 and F16C (the decoder's loops vectorize; exact either
/// way: no contraction).
#[target_feature(enable = "avx2,f16c")]
unsafe fn dequantize_avx2(f: QuantFormat, src: &[u8], out: &mut [f32]) {
    with_format!(f, F => dequantize_blocks::<F>(src, out))
}

/// `fast` `out[i * ld + j]` for every weight row of `w` against the quantized activations `a`
/// through int8 panels. False when `path` has no panel kernel (only AVX-512 VNNI has one).
pub(super) fn fast(
    path: QuantPath,
    w: &QuantMatrix,
    a: &ActQ8,
    out: &OutPtr,
    ld: usize,
    par: bool,
) -> bool {
    if path != (QuantPath::Avx512 { vnni: true }) || !enabled() {
        return false;
    }
    let m = a.m();
    super::super::with_scratch(&BSUM16, |bs| {
        let nb = w.cols / w.format.block_values();
        let pairs = w.format.block_values() / 32;
        bs.clear();
        for b in 0..m * nb {
            let s = a.block(b).2;
            bs.extend((0..pairs).map(|p| (s[2 * p] as u16 as u32) | ((s[2 * p + 1] as u32) << 16)));
        }
        let np = panel_rows(w, par);
        let one = |c: usize| {
            let rows = c * np..((c + 1) * np).min(w.rows);
            // SAFETY: the path is AVX-512 VNNI (checked above), resolved from an available kernel.
            unsafe { fast_panel(w, a, bs, out, ld, rows) };
        };
        for_tasks(par, w.rows.div_ceil(np), one);
    });
    true
}

/// Weight rows per panel: a multiple of 16 whose panel stays within 384 KiB (L2), and at most a
/// quarter of each thread's share so the threads balance.
fn panel_rows(w: &QuantMatrix, par: bool) -> usize {
    let per16 =
        with_format!(w.format, F => Layout::of::<F>().stride) * (w.cols / w.format.block_values());
    let by_bytes = ((384 << 10) / per16.max(1)).max(1) * 16;
    let threads = if par {
        super::super::team::threads()
    } else {
        1
    };
    let by_share = w.rows.div_ceil(4 * threads).next_multiple_of(16);
    by_bytes.min(by_share).max(16)
}

/// Weight rows `rows` against every activation row: the panel unpacked, then [`tile`]s.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
unsafe fn fast_panel(
    w: &QuantMatrix,
    a: &ActQ8,
    bs: &[u32],
    out: &OutPtr,
    ld: usize,
    rows: std::ops::Range<usize>,
) {
    with_format!(w.format, F => {
        // SAFETY: forwarded from the caller.
        unsafe { fast_panel_f::<F>(w, a, bs, out, ld, rows) }
    })
}

/// Activation rows per tile of [`tile`].
const R: usize = 4;

/// [`fast_panel`] for format `F`.
#[inline(always)]
unsafe fn fast_panel_f<F: Format>(
    w: &QuantMatrix,
    a: &ActQ8,
    bs: &[u32],
    out: &OutPtr,
    ld: usize,
    rows: std::ops::Range<usize>,
) {
    let lay = Layout::of::<F>();
    let nb = w.cols / F::QK;
    let rb = w.row_bytes();
    let m = a.m();
    assert!(rows.end <= w.rows && m > 0 && (m - 1) * ld + w.rows <= out.len);
    assert!(bs.len() == m * nb * (F::QK / 32));
    // The loop, not a closure: a closure would not inherit the target features.
    let cell: *const std::cell::RefCell<Vec<u8>> = PANEL.with(|c| c as *const _);
    // SAFETY: a thread-local lives as long as its thread, which is running this call.
    let mut guard = unsafe { &*cell }.try_borrow_mut().ok();
    let mut own = Vec::new();
    let buf = match guard.as_deref_mut() {
        Some(b) => b,
        None => &mut own,
    };
    let groups = (rows.end - rows.start).div_ceil(16);
    let gstride = nb * lay.stride;
    let pbuf = super::super::aligned(buf, groups * gstride, 1 << 16);
    for g in 0..groups {
        let j = rows.start + 16 * g;
        let cols = (rows.end - j).min(16);
        let dst = &mut pbuf[g * gstride..(g + 1) * gstride];
        // SAFETY: the CPU has AVX-512F/BW and AVX2 (forwarded from the caller).
        unsafe { panel::pack::<F>(&w.data[j * rb..(j + cols) * rb], cols, nb, dst) };
    }
    // Activation rows a block at a time that stay in L2 while every group passes over them
    // (a whole prefill's rows of the down projection would come from L3 once per group).
    let mb = ((ACT_BYTES / w.cols.max(1)) / R * R).max(R);
    for i0 in (0..m).step_by(mb) {
        let i1 = (i0 + mb).min(m);
        for g in 0..groups {
            let j = rows.start + 16 * g;
            let mask: __mmask16 = ((1u32 << (rows.end - j).min(16)) - 1) as __mmask16;
            let wg = pbuf[g * gstride..].as_ptr();
            let mut i = i0;
            while i + R <= i1 {
                // SAFETY: as for `emit`.
                unsafe { emit::<F, R>(wg, nb, a, bs, i, out, ld, j, mask) };
                i += R;
            }
            while i < i1 {
                // SAFETY: as for `emit`.
                unsafe { emit::<F, 1>(wg, nb, a, bs, i, out, ld, j, mask) };
                i += 1;
            }
        }
    }
}

/// Bytes of activation quants in a block of rows of [`fast_panel_f`].
const ACT_BYTES: usize = 192 << 10;

/// Runs [`tile`] for activation rows `i..i + T` and stores the `mask` columns from `j`.
///
/// # Safety
/// The CPU has AVX-512 VNNI; `wg` is a packed group of `nb` blocks of `F`; rows `i..i + T < m`;
/// `out` holds `m` rows of stride `ld` with columns `j..j + popcount(mask)` inside `0..ld`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn emit<F: Format, const T: usize>(
    wg: *const u8,
    nb: usize,
    a: &ActQ8,
    bs: &[u32],
    i: usize,
    out: &OutPtr,
    ld: usize,
    j: usize,
    mask: __mmask16,
) {
    let pairs = F::QK / 32;
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let mut q = [std::ptr::null::<i8>(); T];
        let mut bp = [std::ptr::null::<u32>(); T];
        let mut da = [0f32; T];
        for r in 0..T {
            let (qs, d, _) = a.block((i + r) * nb + b);
            q[r] = qs.as_ptr();
            da[r] = d;
            bp[r] = bs[((i + r) * nb + b) * pairs..][..pairs].as_ptr();
        }
        // SAFETY: block `b` of the group lies at `b * stride`; the activation blocks hold `QK`
        // quants and `QK / 32` sum pairs (sliced above).
        unsafe { tile::<F, T>(wg.add(b * Layout::of::<F>().stride), q, bp, da, &mut acc) };
    }
    for (r, v) in acc.into_iter().enumerate() {
        let at = (i + r) * ld + j;
        assert!(at + (mask.count_ones() as usize) <= out.len);
        // SAFETY: the masked lanes lie inside `out` (asserted); no other task writes them.
        unsafe { _mm512_mask_storeu_ps(out.ptr.add(at), mask, v) };
    }
}

/// One block of a 16-column group against `T` activation rows: `acc[r] += da[r] * (d * isum -
/// dmin * msum)` per column, with `isum = sum_t sc[t] * sum q * a` and `msum = sum_t mn[t] *
/// bsum[t]` exact in i32 (the unsigned weights `q + OFF` are corrected by `OFF * sc[t] * bsum[t]`).
///
/// # Safety
/// The CPU has AVX-512 VNNI; `blk` is a packed block of `F` ([`Layout`]); every `q[r]` holds `QK`
/// quants and `bp[r]` `QK / 32` pairs.
#[inline(always)]
unsafe fn tile<F: Format, const T: usize>(
    blk: *const u8,
    q: [*const i8; T],
    bp: [*const u32; T],
    da: [f32; T],
    acc: &mut [__m512; T],
) {
    let lay = Layout::of::<F>();
    let mut isum = [_mm512_setzero_si512(); T];
    let g = lay.group;
    // Loops and `inline(always)` helpers, not closures: a closure would not inherit the target
    // features, and the intrinsics inside would become calls.
    for t in 0..F::QK / g {
        let mut s = [_mm512_setzero_si512(); T];
        for kk in 0..g / 4 {
            let w = load(blk, 64 * (t * g / 4 + kk));
            for r in 0..T {
                s[r] = _mm512_dpbusd_epi32(s[r], w, quad(q[r], t * g + 4 * kk));
            }
        }
        if lay.scaled {
            let sc = load(blk, lay.sc + 64 * t);
            for r in 0..T {
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(s[r], sc));
            }
        } else {
            isum = s;
        }
    }
    let mut corr = [_mm512_setzero_si512(); T];
    let mut msum = [_mm512_setzero_si512(); T];
    for p in 0..F::QK / 32 {
        let mut pair = [_mm512_setzero_si512(); T];
        for r in 0..T {
            pair[r] = _mm512_set1_epi32(bp[r].add(p).read() as i32);
        }
        if lay.off != 0 {
            let c = load(blk, lay.corr + 64 * p);
            for r in 0..T {
                corr[r] = _mm512_dpwssd_epi32(corr[r], c, pair[r]);
            }
        }
        if F::MINS {
            let c = load(blk, lay.mn + 64 * p);
            for r in 0..T {
                msum[r] = _mm512_dpwssd_epi32(msum[r], c, pair[r]);
            }
        }
    }
    let d = _mm512_loadu_ps(blk.add(lay.d) as *const f32);
    let dmin = _mm512_loadu_ps(blk.add(lay.d + 64) as *const f32);
    for r in 0..T {
        let i = _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[r], corr[r]));
        let v = _mm512_sub_ps(
            _mm512_mul_ps(d, i),
            _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(msum[r])),
        );
        acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(_mm512_set1_ps(da[r]), v));
    }
}

/// The 64 bytes at `p + off`.
#[inline(always)]
unsafe fn load(p: *const u8, off: usize) -> __m512i {
    _mm512_loadu_si512(p.add(off) as *const _)
}

/// The 4 quants at `p + at` broadcast to every lane.
#[inline(always)]
unsafe fn quad(p: *const i8, at: usize) -> __m512i {
    _mm512_set1_epi32((p.add(at) as *const i32).read_unaligned())
}

/// Tasks `0..n` on the thread team when `par`, else in order on this thread.
fn for_tasks(par: bool, n: usize, f: impl Fn(usize) + Sync) {
    if par {
        super::super::par_for(n, f);
    } else {
        (0..n).for_each(f);
    }
}

#[cfg(test)]
mod tests {
    //! The panel GEMMs against the scalar reference (`fast`, bit for bit), the f64 sums (`exact`)
    //! and the batch-1 GEMV of each row alone (both, bit for bit), on every format and on shapes
    //! with odd edges: rows not a multiple of 16 (masked columns), `m` not a multiple of the tile
    //! (single rows left over) and past the broadcast GEMM's threshold, one to three blocks.

    use super::super::tests::{assert_close, random_matrix, reference, run_on, Rng};
    use super::super::*;

    const SHAPES: [(usize, usize, usize); 3] = [(5, 1, 1), (17, 17, 3), (35, 40, 2)];

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// The SIMD paths, or None (with a SKIPPED line) when this CPU has none.
    fn simd_paths() -> Option<Vec<QuantPath>> {
        let paths: Vec<QuantPath> = QuantPath::available_all()
            .into_iter()
            .filter(|p| *p != QuantPath::Scalar)
            .collect();
        if paths.is_empty() {
            println!("SKIPPED: no SIMD quantized path on this CPU");
            return None;
        }
        Some(paths)
    }

    /// Runs `check(format, m, w, x, path, threaded)` on every format, shape and SIMD path.
    fn each_case(check: impl Fn(QuantFormat, usize, &QuantMatrix, &[f32], QuantPath, bool)) {
        let Some(paths) = simd_paths() else { return };
        let mut rng = Rng(0x5EED);
        for f in QuantFormat::ALL {
            for (m, rows, nblk) in SHAPES {
                let cols = nblk * f.block_values();
                let data = random_matrix(f, rows, cols, &mut rng);
                let w = QuantMatrix::new(f, &data, rows, cols).unwrap();
                let x: Vec<f32> = (0..m * cols).map(|_| rng.f32()).collect();
                for &path in &paths {
                    for par in [false, true] {
                        check(f, m, &w, &x, path, par);
                    }
                }
            }
        }
    }

    /// Every row of `all` (`m` rows of `w.rows`) equals the batch-1 GEMV of its input alone.
    fn rows_alone(
        w: &QuantMatrix,
        x: &[f32],
        m: usize,
        p: Precision,
        path: QuantPath,
        all: &[f32],
    ) {
        let (rows, cols) = (w.rows, w.cols);
        for i in 0..m {
            let one = run_on(w, &x[i * cols..(i + 1) * cols], 1, p, path, false);
            assert_eq!(
                bits(&one),
                bits(&all[i * rows..(i + 1) * rows]),
                "{} m={m} {path:?} {p:?} row {i}: alone vs batched",
                w.format.name()
            );
        }
    }

    #[test]
    fn fast_panels_equal_the_scalar_reference_and_rows_alone() {
        if !QuantPath::available_all().contains(&QuantPath::Avx512 { vnni: true }) {
            println!("SKIPPED (panels): no AVX-512 VNNI on this CPU; the other paths are checked");
        }
        each_case(|f, m, w, x, path, par| {
            let scalar = run_on(w, x, m, Precision::Fast, QuantPath::Scalar, false);
            let fast = run_on(w, x, m, Precision::Fast, path, par);
            let what = format!(
                "{} m={m} {}x{} {path:?} par {par}",
                f.name(),
                w.rows,
                w.cols
            );
            assert_eq!(bits(&fast), bits(&scalar), "{what}: fast vs scalar");
            rows_alone(w, x, m, Precision::Fast, path, &fast);
        });
    }

    #[test]
    fn exact_panels_equal_the_f64_sums_and_rows_alone() {
        each_case(|f, m, w, x, path, par| {
            let mut wf = vec![0f32; w.rows * w.cols];
            dequantize(f, w.data, &mut wf).unwrap();
            let want = reference(&wf, x, m, w.rows, w.cols);
            let exact = run_on(w, x, m, Precision::Exact, path, par);
            let what = format!(
                "{} m={m} {}x{} {path:?} par {par}",
                f.name(),
                w.rows,
                w.cols
            );
            assert_close(&exact, &want, &what);
            rows_alone(w, x, m, Precision::Exact, path, &exact);
        });
    }
}
