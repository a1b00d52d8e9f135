//! The AVX-512 GEMM with broadcast operands, for matmuls with many input rows (prefill, large
//! batches), computing every output bit for bit as the dot-product kernels of [`simd`] do.
//!
//! A dot-product tile (`simd::tile`) keeps one accumulator per output, a vector across `k`: lane
//! `l` of it sums the products of the 4-byte unit `l` of every 64-byte step (one f32, or one pair of
//! bf16 for `vdpbf16ps`), and the lanes are summed at the end in a fixed tree. Each step loads a
//! full vector of every input row and every weight row of the tile, each from a stream of its own.
//!
//! Here the same sums are computed with the vector across input rows. The inputs are packed once
//! per matmul, and each chunk of weight rows once per chunk, so that for lane `l` and step `s` the
//! units of 16 consecutive input rows are one vector and the units of a tile's weight rows lie
//! side by side, to be broadcast. Pass `l` of a tile computes lane `l`'s sums for `16 * MV` input
//! rows and `NC` weight rows with the same operations in the same order as the dot-product tile
//! does in lane `l`; the 16 passes then meet in the tree `simd::x86::hsum512` uses. So the result
//! does not depend on which kernel ran, nor on the batch: a row computed alone (batch 1 runs the
//! dot-product kernels) is the same bit for bit.
//!
//! Packing transposes 16 x 16 blocks of units in registers; widened weights (bf16 or f16 under
//! f32 activations) are widened on the way, which is exact.
//!
//! [`simd`]: super::simd

use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use half::{bf16, f16};

use super::simd::{Dot, Job};

/// Lanes of an accumulator: units per step.
const LANES: usize = 16;
/// Vectors of 16 input rows per tile.
const MV: usize = 2;
/// Weight rows per tile.
const NC: usize = 12;
/// Input rows per tile.
const ROWS: usize = 16 * MV;

/// A [`Dot`] whose vector operands are 16 four-byte units and whose accumulator is a `__m512`: the
/// f32 kernel and the `vdpbf16ps` kernel.
pub(super) trait Units: Dot<Acc = __m512> {
    /// The x operand from 16 units.
    unsafe fn xu(v: __m512i) -> Self::Xv;
    /// The w operand from 16 units.
    unsafe fn wu(v: __m512i) -> Self::Wv;
}

/// Stored elements read as the units of a [`Units`] kernel: 16 units per step.
pub(super) trait Src {
    type T: Copy;
    /// Elements per step.
    const STEP: usize;
    /// The 16 units of step `s` of the row at `p`.
    unsafe fn units(p: *const Self::T, s: usize) -> __m512i;
    /// One element as the kernel's scalar reference widens it (for the tail of `k`).
    fn f32(v: Self::T) -> f32;
    /// Whether [`Src::bcast`] reads a unit straight from a stored row in a load and a little
    /// arithmetic (a tile may then broadcast from the weights as stored: see [`direct`]); not
    /// where it takes more, and chunks are packed instead.
    const STORED: bool;
    /// Unit `l` of a step broadcast to all lanes, read from the stored row at `p`, the step's
    /// element `l * STEP / 16`; `ODD` is whether `l` is odd.
    unsafe fn bcast<const ODD: bool>(p: *const Self::T) -> __m512i;
}

/// The 4 bytes at `p`, broadcast.
#[inline(always)]
unsafe fn bcast32<T>(p: *const T) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// Elements that are the units, or pairs of them (f32; bf16 pairs for `vdpbf16ps`).
pub(super) struct Raw<T>(PhantomData<T>);
/// bf16 widened to f32 units.
pub(super) struct WideBf16;
/// f16 widened to f32 units.
pub(super) struct WideF16;

impl Src for Raw<f32> {
    type T = f32;
    const STEP: usize = 16;
    #[inline(always)]
    unsafe fn units(p: *const f32, s: usize) -> __m512i {
        _mm512_loadu_si512(p.add(16 * s) as *const _)
    }
    fn f32(v: f32) -> f32 {
        v
    }
    const STORED: bool = true;
    #[inline(always)]
    unsafe fn bcast<const ODD: bool>(p: *const f32) -> __m512i {
        bcast32(p)
    }
}
impl Src for Raw<bf16> {
    type T = bf16;
    const STEP: usize = 32;
    #[inline(always)]
    unsafe fn units(p: *const bf16, s: usize) -> __m512i {
        _mm512_loadu_si512(p.add(32 * s) as *const _)
    }
    fn f32(v: bf16) -> f32 {
        v.to_f32()
    }
    const STORED: bool = true;
    #[inline(always)]
    unsafe fn bcast<const ODD: bool>(p: *const bf16) -> __m512i {
        bcast32(p)
    }
}
impl Src for WideBf16 {
    type T = bf16;
    const STEP: usize = 16;
    #[inline(always)]
    unsafe fn units(p: *const bf16, s: usize) -> __m512i {
        let h = _mm256_loadu_si256(p.add(16 * s) as *const __m256i);
        _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h))
    }
    fn f32(v: bf16) -> f32 {
        v.to_f32()
    }
    const STORED: bool = true;
    /// The element is one half of an aligned pair, read whole: the high half (odd `l`) has its
    /// low half cleared, the low half (even `l`) is shifted up. Either is the bf16's f32, exactly,
    /// and neither reads outside the row (`l` is even at the row's first element).
    #[inline(always)]
    unsafe fn bcast<const ODD: bool>(p: *const bf16) -> __m512i {
        if ODD {
            _mm512_and_si512(bcast32(p.sub(1)), _mm512_set1_epi32(0xFFFF_0000u32 as i32))
        } else {
            _mm512_slli_epi32::<16>(bcast32(p))
        }
    }
}
impl Src for WideF16 {
    type T = f16;
    const STEP: usize = 16;
    #[inline(always)]
    unsafe fn units(p: *const f16, s: usize) -> __m512i {
        let h = _mm256_loadu_si256(p.add(16 * s) as *const __m256i);
        _mm512_castps_si512(_mm512_cvtph_ps(h))
    }
    fn f32(v: f16) -> f32 {
        v.to_f32()
    }
    /// An f16 takes a conversion on top of the broadcast: chunks are packed (widened) once.
    const STORED: bool = false;
    #[inline(always)]
    unsafe fn bcast<const ODD: bool>(p: *const f16) -> __m512i {
        _mm512_castps_si512(_mm512_cvtph_ps(_mm256_set1_epi16((p as *const i16).read())))
    }
}

/// Length in `u32` of the packed inputs of `m` rows of `k` elements, `step` per 16 units.
pub(super) fn packed_len(m: usize, k: usize, step: usize) -> usize {
    m.div_ceil(ROWS) * ROWS * (k / step) * LANES
}

/// Weight rows per chunk: a multiple of the tile's `NC` whose packed units (4 bytes each) stay in
/// L2 with a tile of inputs streaming past (at most 256 KiB; 48 rows where `k` allows).
pub(super) fn chunk(k: usize) -> usize {
    let rows = (256 << 10) / (4 * k.max(1));
    (rows / NC * NC).clamp(NC, 4 * NC)
}

/// The transpose of 16 rows of 16 units: unit `l` of row `r` becomes unit `r` of row `l`.
#[inline(always)]
pub(super) unsafe fn transpose(r: &[__m512i; 16]) -> [__m512i; 16] {
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + e], 128-bit lane q: unit 4q + e of rows 4g..4g + 4.
    let mut u = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    let mut o = [_mm512_setzero_si512(); 16];
    for e in 0..4 {
        let (a, b, c, d) = (u[e], u[4 + e], u[8 + e], u[12 + e]);
        let x0 = _mm512_shuffle_i32x4::<0x44>(a, b);
        let x1 = _mm512_shuffle_i32x4::<0xEE>(a, b);
        let x2 = _mm512_shuffle_i32x4::<0x44>(c, d);
        let x3 = _mm512_shuffle_i32x4::<0xEE>(c, d);
        o[e] = _mm512_shuffle_i32x4::<0x88>(x0, x2);
        o[4 + e] = _mm512_shuffle_i32x4::<0xDD>(x0, x2);
        o[8 + e] = _mm512_shuffle_i32x4::<0x88>(x1, x3);
        o[12 + e] = _mm512_shuffle_i32x4::<0xDD>(x1, x3);
    }
    o
}

/// Packs `rows <= 16` rows of `k` elements at `src` (stride `k`; missing rows are zero): for every
/// whole step `s` and lane `l`, the 16 rows' units `l` go to `dst + l * l_stride + s * s_stride`.
#[inline(always)]
unsafe fn pack16<S: Src>(
    src: *const S::T,
    rows: usize,
    k: usize,
    dst: *mut u32,
    l_stride: usize,
    s_stride: usize,
) {
    let mut r = [_mm512_setzero_si512(); 16];
    for s in 0..k / S::STEP {
        for (i, v) in r.iter_mut().enumerate().take(rows) {
            *v = S::units(src.add(i * k), s);
        }
        let o = transpose(&r);
        for (l, v) in o.iter().enumerate() {
            _mm512_storeu_si512(dst.add(l * l_stride + s * s_stride) as *mut _, *v);
        }
    }
}

/// Packs the `m` input rows of `k` elements at `x` for [`gemm`]: for tile `t` (rows `t * ROWS..`),
/// lane `l` and step `s`, the units of the tile's rows are contiguous at
/// `((t * LANES + l) * steps + s) * ROWS`; rows past `m` are zero. Split across the pool by 16 rows.
///
/// # Safety
/// `x` holds `m * k` elements; `out` holds [`packed_len`] units; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_x<S: Src>(x: *const S::T, m: usize, k: usize, out: &mut [u32]) {
    let steps = k / S::STEP;
    let tile_len = LANES * steps * ROWS;
    let tiles = m.div_ceil(ROWS);
    debug_assert!(out.len() >= tiles * tile_len);
    struct Ptrs<T>(*const T, *mut u32);
    // SAFETY: tiles write disjoint ranges of `out` and only read `x`, both outliving the section.
    unsafe impl<T> Sync for Ptrs<T> {}
    let p = Ptrs(x, out.as_mut_ptr());
    // One task per 16 rows: a decode step's 32 rows make two, one per core.
    let one = |task: usize| {
        let p = &p;
        let (t, v) = (task / MV, task % MV);
        let i = t * ROWS + v * 16;
        // SAFETY: rows `i..i + rows` lie inside `x`; tile `t`'s units lie inside `out`. The
        // caller's `target_feature` covers this thread (the section runs the same code on the
        // team's threads, all on this CPU).
        unsafe {
            pack16_entry::<S>(
                p.0.add(i.min(m) * k),
                m.saturating_sub(i).min(16),
                k,
                p.1.add(t * tile_len + v * 16),
                steps * ROWS,
                ROWS,
            )
        }
    };
    if m * k >= super::PAR_THRESHOLD / 4 {
        super::par_for(tiles * MV, one);
    } else {
        (0..tiles * MV).for_each(one);
    }
}

/// [`pack16`] as a `target_feature` function (closures do not inherit the caller's features).
#[target_feature(enable = "avx512f")]
unsafe fn pack16_entry<S: Src>(
    src: *const S::T,
    rows: usize,
    k: usize,
    dst: *mut u32,
    l_stride: usize,
    s_stride: usize,
) {
    pack16::<S>(src, rows, k, dst, l_stride, s_stride)
}

thread_local! {
    /// A chunk of weight rows packed for [`gemm`] (grows to the largest, then reused).
    static PACKED_W: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The passes in the order of the lanes' tree: after every pair the stack of partial sums merges
/// as a binary counter does, so pass `p` of this order meets exactly the partners `hsum512` adds
/// it to (lanes `l` and `l + 8`, then pairs 4 apart, 2 apart, 1 apart).
const ORDER: [usize; LANES] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

/// Columns `j0..j1` of a job whose inputs are packed at `jb.xp` (see [`pack_x`]): every tile of
/// input rows meets the chunk's weight rows `NC` at a time, broadcast from the weights as stored
/// where [`direct`] says so, else from the chunk packed first (`[lane][step][row]`, rows padded to
/// 16).
///
/// # Safety
/// As for any `BlockFn` (see [`Job`]); `jb.xp` holds the packed inputs of `jb.x`; the CPU
/// supports the `Units` operations (called from a `target_feature` entry point).
#[inline(always)]
pub(super) unsafe fn gemm<D: Units, S: Src>(jb: &Job<D::X, S::T>, j0: usize, j1: usize) {
    debug_assert_eq!(D::STEP, S::STEP);
    let k = jb.k;
    let steps = k / S::STEP;
    if steps == 0 || j0 >= j1 {
        return;
    }
    if direct::<S>(jb.m) {
        return tiles::<D, S, true>(jb, j0, j1, std::ptr::null(), steps, 0);
    }
    let cols = (j1 - j0).next_multiple_of(16);
    // The thread's buffer, or a fresh one when it is in use further up this thread's stack (see
    // `with_scratch`); not through a closure, which would not inherit the caller's features.
    let cell: *const std::cell::RefCell<Vec<u32>> = PACKED_W.with(|c| c as *const _);
    // SAFETY: a thread-local lives as long as its thread, which is running this call.
    let mut guard = unsafe { &*cell }.try_borrow_mut().ok();
    let mut own = Vec::new();
    let buf = match guard.as_deref_mut() {
        Some(b) => b,
        None => &mut own,
    };
    let wp = super::aligned(buf, LANES * steps * cols, 1 << 14).as_mut_ptr();
    let mut g = j0;
    while g < j1 {
        pack16::<S>(
            jb.w.add(g * k),
            (j1 - g).min(16),
            k,
            wp.add(g - j0),
            steps * cols,
            cols,
        );
        g += 16;
    }
    tiles::<D, S, false>(jb, j0, j1, wp, steps, cols)
}

/// Whether a matmul of `m` input rows broadcasts the weights as stored rather than packing each
/// chunk first. Packing costs about as much as a tile of 32 rows computing on the packed chunk (a
/// transpose, read from memory), once for all tiles; broadcasting from the stored rows costs a
/// little arithmetic per unit in every tile, and re-reads a tile's rows in each of its 16 passes,
/// from L1 (the tile goes a block of steps at a time). Measured (benches/kernels.rs, `gemm`): at
/// 32 rows broadcasting reaches 78-86% of the peak against packing's 58-75%; at 128 rows the two
/// are even, at 512 packing is ahead.
fn direct<S: Src>(m: usize) -> bool {
    S::STORED && m <= direct_max_m()
}

fn direct_max_m() -> usize {
    static M: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *M.get_or_init(|| {
        std::env::var("RSTAR_DIRECT_M")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2 * ROWS)
    })
}

/// Every tile of the job's input rows against weight rows `j0..j1`, `NC` at a time: packed at `wp` (stride `cols` between steps) or, `DIRECT`, as stored, a block of steps
/// at a time whose units fit L1 ([`block_steps`]).
#[inline(always)]
unsafe fn tiles<D: Units, S: Src, const DIRECT: bool>(
    jb: &Job<D::X, S::T>,
    j0: usize,
    j1: usize,
    wp: *const u32,
    steps: usize,
    cols: usize,
) {
    let kb = if DIRECT {
        block_steps::<S>().min(steps)
    } else {
        steps
    };
    // The next chunk's weights into L2, a slice before each pass of each tile: they would
    // otherwise come from memory in many streams at once.
    let tiles_m = jb.m.div_ceil(ROWS);
    let w = j1 - j0;
    let passes = tiles_m * (w / NC + w % NC / 4 + w % 4) * LANES * steps.div_ceil(kb);
    let mut ahead = Ahead {
        at: 0,
        per: jb.ahead_len.div_ceil(passes.max(1)).next_multiple_of(64),
    };
    let at = Steps {
        all: steps,
        kb,
        cols,
    };
    for t in 0..tiles_m {
        let mut j = j0;
        while j + NC <= j1 {
            tile::<D, S, NC, DIRECT>(jb, t, j, wp, j0, at, &mut ahead);
            j += NC;
        }
        while j + 4 <= j1 {
            tile::<D, S, 4, DIRECT>(jb, t, j, wp, j0, at, &mut ahead);
            j += 4;
        }
        while j < j1 {
            tile::<D, S, 1, DIRECT>(jb, t, j, wp, j0, at, &mut ahead);
            j += 1;
        }
    }
}

/// Steps per block of a tile of `NC` weight rows broadcast as stored: the block's stored units
/// take at most 32 KiB, so that the 16 passes over it find them in L1 (48 KiB on Zen 4 and 5,
/// Ice Lake and later) rather than L2. Measured (benches/kernels.rs, `gemm down`, `k` = 4864,
/// 32 rows): 67% -> 70% of the f32 peak in `exact` (bf16 units), 62% -> 71% of the bf16 peak in
/// `fast` (4-byte units, which without blocks were packed instead: L2 does not keep up with them).
fn block_steps<S: Src>() -> usize {
    ((32 << 10) / (NC * S::STEP * std::mem::size_of::<S::T>())).max(1)
}

/// A tile's steps: `all` of them, in blocks of `kb`; `cols` is the stride between the steps of a
/// packed chunk.
#[derive(Clone, Copy)]
struct Steps {
    all: usize,
    kb: usize,
    cols: usize,
}

/// The prefetch of the next chunk ([`Job`]'s `ahead`): `per` bytes at a time from `at`.
struct Ahead {
    at: usize,
    per: usize,
}

impl Ahead {
    #[inline(always)]
    fn next<X, W>(&mut self, jb: &Job<X, W>) {
        let stop = (self.at + self.per).min(jb.ahead_len);
        while self.at < stop {
            // SAFETY: a prefetch never faults; `at < ahead_len`, inside the next chunk.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(jb.ahead.add(self.at)) };
            self.at += 64;
        }
    }
}

/// Input tile `t` against weight rows `j..j + C`: packed, the chunk's (rows `j0..`) at `wp`
/// (stride `at.cols` between steps); `DIRECT`, as stored. Block by block of steps, pass `l` carries
/// lane `l`'s sums on from where the block before left them, so they are the sums a pass over all
/// steps makes; the last block's passes merge as they go (see [`ORDER`]). Each pass first
/// prefetches its slice of the next chunk.
///
/// Longer than 100 lines on purpose: the carried lane sums and the merge stack are one
/// register-resident state of the block loop; split across calls they would go through memory.
#[inline(always)]
unsafe fn tile<D: Units, S: Src, const C: usize, const DIRECT: bool>(
    jb: &Job<D::X, S::T>,
    t: usize,
    j: usize,
    wp: *const u32,
    j0: usize,
    at: Steps,
    ahead: &mut Ahead,
) {
    let (k, steps, cols) = (jb.k, at.all, at.cols);
    // Lane sums carried from one block to the next, and the stack of merged sums of the last
    // block: at most 4 deep (16 = 2^4 lanes).
    let mut carry = MaybeUninit::<[[[__m512; C]; MV]; LANES]>::uninit();
    let carry = carry.as_mut_ptr() as *mut [[__m512; C]; MV];
    let mut stack = MaybeUninit::<[[[__m512; C]; MV]; 4]>::uninit();
    let stack = stack.as_mut_ptr() as *mut [[__m512; C]; MV];
    let xt = jb.xp.add(t * LANES * steps * ROWS);
    let mut acc = [[D::zero(); C]; MV];
    let mut s0 = 0;
    while s0 < steps {
        let n = at.kb.min(steps - s0);
        let last = s0 + n == steps;
        let mut depth = 0;
        for (p, &l) in ORDER.iter().enumerate() {
            ahead.next(jb);
            acc = if s0 == 0 {
                [[D::zero(); C]; MV]
            } else {
                *carry.add(l)
            };
            let x = xt.add((l * steps + s0) * ROWS);
            if !DIRECT {
                let w = wp.add(j - j0 + (l * steps + s0) * cols);
                pass::<D, S, C, false, false>(&mut acc, x, w, std::ptr::null(), n, cols, k);
            } else {
                let w = jb.w.add(j * k + l * S::STEP / LANES + s0 * S::STEP);
                if l % 2 == 1 {
                    pass::<D, S, C, true, true>(&mut acc, x, wp, w, n, cols, k);
                } else {
                    pass::<D, S, C, true, false>(&mut acc, x, wp, w, n, cols, k);
                }
            }
            if !last {
                *carry.add(l) = acc;
                continue;
            }
            // After the last block, the passes in `ORDER` merge as a binary counter does.
            let mut q = p + 1;
            while q % 2 == 0 {
                depth -= 1;
                let top = &*stack.add(depth);
                for (av, tv) in acc.iter_mut().zip(top) {
                    for (a, &b) in av.iter_mut().zip(tv) {
                        *a = _mm512_add_ps(b, *a);
                    }
                }
                q /= 2;
            }
            if p + 1 < LANES {
                *stack.add(depth) = acc;
                depth += 1;
            }
        }
        s0 += n;
    }
    // `acc` holds the tree's sums. Without a tail of `k`, each 16-row vector's sums are turned
    // into rows in registers and stored a row at a time.
    let main = steps * S::STEP;
    let rows = ROWS.min(jb.m - t * ROWS);
    if main == k {
        let mask: __mmask16 = if C >= 16 { u16::MAX } else { (1 << C) - 1 };
        for (v, av) in acc.iter().enumerate() {
            let mut cols = [_mm512_setzero_si512(); 16];
            for (x, &a) in cols.iter_mut().zip(av) {
                *x = _mm512_castps_si512(a);
            }
            let by_row = transpose(&cols);
            for (r, &x) in by_row.iter().enumerate().take(rows.saturating_sub(v * 16)) {
                let out = jb.out.add((t * ROWS + v * 16 + r) * jb.ld + j);
                _mm512_mask_storeu_ps(out, mask, _mm512_castsi512_ps(x));
            }
        }
        return;
    }
    // With one, the tail one product at a time, as the dot-product tile adds it.
    let mut sums = [[[0f32; 16]; C]; MV];
    for (sv, av) in sums.iter_mut().zip(&acc) {
        for (sc, &a) in sv.iter_mut().zip(av) {
            _mm512_storeu_ps(sc.as_mut_ptr(), a);
        }
    }
    for r in 0..rows {
        let i = t * ROWS + r;
        let out = jb.out.add(i * jb.ld + j);
        for (c, col) in sums[r / 16].iter().enumerate() {
            let mut sum = col[r % 16];
            for tt in main..k {
                sum += D::xf(*jb.x.add(i * k + tt)) * S::f32(*jb.w.add((j + c) * k + tt));
            }
            *out.add(c) = sum;
        }
    }
}

/// One pass of a tile, for lane `l`: every step's row vectors, from `x` on, against its weight
/// units, packed from `w` on (stride `cols`) or, `DIRECT`, as stored from `wr` on (unit `l` of
/// each of `C` rows `k` apart, `ODD` as `l` is).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pass<D: Units, S: Src, const C: usize, const DIRECT: bool, const ODD: bool>(
    acc: &mut [[__m512; C]; MV],
    mut x: *const u32,
    mut w: *const u32,
    mut wr: *const S::T,
    steps: usize,
    cols: usize,
    k: usize,
) {
    for _ in 0..steps {
        pass_step::<D, S, C, DIRECT, ODD>(acc, x, w, wr, k);
        x = x.add(ROWS);
        if DIRECT {
            wr = wr.add(S::STEP);
        } else {
            w = w.add(cols);
        }
    }
}

/// One step of one pass: the `MV` row vectors at `x` against each of the `C` weight units at `w`
/// (or, `DIRECT`, the stored ones at `wr`, `k` apart), broadcast.
#[inline(always)]
unsafe fn pass_step<D: Units, S: Src, const C: usize, const DIRECT: bool, const ODD: bool>(
    acc: &mut [[__m512; C]; MV],
    x: *const u32,
    w: *const u32,
    wr: *const S::T,
    k: usize,
) {
    // Loops, not closures: a closure does not inherit the caller's `target_feature`s, and the
    // intrinsics in it would not inline.
    let mut xv = [D::xu(_mm512_loadu_si512(x as *const _)); MV];
    for (v, xv) in xv.iter_mut().enumerate().skip(1) {
        *xv = D::xu(_mm512_loadu_si512(x.add(v * 16) as *const _));
    }
    for c in 0..C {
        let b = D::wu(if DIRECT {
            S::bcast::<ODD>(wr.add(c * k))
        } else {
            _mm512_set1_epi32(*(w.add(c) as *const i32))
        });
        for (av, &x) in acc.iter_mut().zip(&xv) {
            av[c] = D::fma(x, b, av[c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The register transpose against its definition, on the CPU where it runs.
    #[test]
    fn transpose_moves_unit_l_of_row_r_to_unit_r_of_row_l() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn run() {
            let mut rows = [_mm512_setzero_si512(); 16];
            let mut src = [[0u32; 16]; 16];
            for (r, row) in src.iter_mut().enumerate() {
                for (l, u) in row.iter_mut().enumerate() {
                    *u = (r * 100 + l) as u32;
                }
                rows[r] = _mm512_loadu_si512(row.as_ptr() as *const _);
            }
            let o = transpose(&rows);
            for (l, v) in o.iter().enumerate() {
                let mut got = [0u32; 16];
                _mm512_storeu_si512(got.as_mut_ptr() as *mut _, *v);
                for (r, &g) in got.iter().enumerate() {
                    assert_eq!(g, src[r][l], "row {l} unit {r}");
                }
            }
        }
        // SAFETY: AVX-512F is present (checked above).
        unsafe { run() }
    }
}
