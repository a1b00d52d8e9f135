//! The general f32 GEMM of training: `c = beta * c + a @ b` with strided operands, so `x @ W.T`
//! (forward), `dy @ W` (input gradient) and `dy.T @ x` (weight gradient) are one call with
//! different strides. Operands are f32 or bf16 (frozen weights read as stored, widened exactly
//! while packing); accumulation is f32.
//!
//! Blocked and packed as BLIS does: `k` in blocks of [`KC`], `n` in blocks of [`NC`]; per block
//! the rows of `a` are packed into panels of `MR` rows and the columns of `b` into panels of `NR`
//! columns (transposes and widening happen here, so one micro-kernel serves every case), both
//! shared by the team, then the `MR x NR` micro-kernel runs over units of rows x columns split
//! across the team ([`super::par_for`]). A micro-panel of `b` (`KC x NR`) stays in L1 while the
//! unit's row panels of `a` stream from L2.
//!
//! Paths: `avx512` (12 x 32 tiles, 24 zmm accumulators), `avx2` (6 x 16), and a portable one
//! (4 x 4) for the rest; [`gemm_ref`] is the scalar reference the tests hold every path to.
//! Results differ from the reference by float reassociation only (sums run in [`KC`] blocks).

use half::bf16;

use super::simd::Kernel;

/// Columns of `k` per packed block.
const KC: usize = 256;
/// Columns of `b` (and `c`) per packed block.
const NC: usize = 3072;
/// Row panels per unit of work (about 96 rows).
const UNIT_PANELS_A: usize = 8;
/// Column panels per unit of work (about 256 columns on `avx512`).
const UNIT_PANELS_B: usize = 8;
/// Below this many multiply-adds the GEMM stays on the calling thread.
const PAR_WORK: usize = 1 << 18;

/// The stored elements of an operand.
#[derive(Clone, Copy)]
pub enum Data<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::F32(d) => d.len(),
            Data::Bf16(d) => d.len(),
        }
    }
}

impl<'a> From<&'a [f32]> for Data<'a> {
    fn from(d: &'a [f32]) -> Self {
        Data::F32(d)
    }
}
impl<'a> From<&'a Vec<f32>> for Data<'a> {
    fn from(d: &'a Vec<f32>) -> Self {
        Data::F32(d)
    }
}
impl<'a> From<&'a [bf16]> for Data<'a> {
    fn from(d: &'a [bf16]) -> Self {
        Data::Bf16(d)
    }
}
impl<'a> From<&'a Vec<bf16>> for Data<'a> {
    fn from(d: &'a Vec<bf16>) -> Self {
        Data::Bf16(d)
    }
}

/// A strided read-only matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: Data<'a>,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn rows(data: impl Into<Data<'a>>, cols: usize) -> Self {
        Mat::strided(data, cols, 1)
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn t(data: impl Into<Data<'a>>, cols: usize) -> Self {
        Mat::strided(data, 1, cols)
    }

    /// Element `(i, j)` at `data[i * rs + j * cs]`.
    pub fn strided(data: impl Into<Data<'a>>, rs: usize, cs: usize) -> Self {
        Mat {
            data: data.into(),
            rs,
            cs,
        }
    }

    /// This matrix transposed (the same elements).
    fn tr(self) -> Self {
        Mat {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }

    fn get(&self, i: usize, j: usize) -> f32 {
        match self.data {
            Data::F32(d) => d[i * self.rs + j * self.cs],
            Data::Bf16(d) => d[i * self.rs + j * self.cs].to_f32(),
        }
    }
}

/// `c[m, n] = beta * c + a[m, k] @ b[k, n]`, `c` row-major with row stride `ldc`, on the path
/// [`super::kernel`] selects. With `beta == 0` the old `c` is not read (NaN there is overwritten).
///
/// Panics if an operand is too short for the shape (an internal bug, never a data error).
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    gemm_with(super::kernel(), m, k, n, a, b, beta, c, ldc)
}

/// The scalar reference of [`gemm`]: each element summed over `k` in order, in f32.
#[allow(clippy::too_many_arguments)]
pub fn gemm_ref(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    check(m, k, n, &a, &b, c, ldc);
    for i in 0..m {
        for j in 0..n {
            let s = (0..k).fold(0f32, |s, p| s + a.get(i, p) * b.get(p, j));
            let o = &mut c[i * ldc + j];
            *o = if beta == 0.0 { s } else { beta * *o + s };
        }
    }
}

fn check(m: usize, k: usize, n: usize, a: &Mat, b: &Mat, c: &[f32], ldc: usize) {
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operand too short");
    assert!(
        m == 0 || n == 0 || (n <= ldc && (m - 1) * ldc + n <= c.len()),
        "gemm output too short"
    );
}

/// One micro-kernel call: `rows x cols` (at most `MR x NR`) of `c` at `c`, from a packed row
/// panel `a` (`kc x MR`) and a packed column panel `b` (`kc x NR`).
struct Tile {
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    beta: f32,
}

/// A path: its tile and micro-kernel.
#[derive(Clone, Copy)]
struct Path {
    mr: usize,
    nr: usize,
    micro: unsafe fn(&Tile),
    /// Transposing packs of f32 gather 16 rows per vector (AVX-512).
    gather: bool,
}

fn path(kern: Kernel) -> Path {
    match kern {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::Amx => Path {
            mr: 12,
            nr: 32,
            micro: x86::micro_avx512,
            gather: true,
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => Path {
            mr: 6,
            nr: 16,
            micro: x86::micro_avx2,
            gather: false,
        },
        _ => Path {
            mr: 4,
            nr: 4,
            micro: micro_portable,
            gather: false,
        },
    }
}

/// [`gemm`] on a given path (`kern` must be available on this CPU).
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    kern: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(kern.available(), "kernel {} unavailable", kern.name());
    check(m, k, n, &a, &b, c, ldc);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n]
                .iter_mut()
                .for_each(|v| *v = if beta == 0.0 { 0.0 } else { *v * beta });
        }
        return;
    }
    let p = path(kern);
    let par = m * n * k >= PAR_WORK && super::team::threads() > 1;
    let each = |count: usize, f: &(dyn Fn(usize) + Sync)| {
        if par {
            super::par_for(count, f)
        } else {
            (0..count).for_each(f)
        }
    };
    let cp = SyncPtr(c.as_mut_ptr());
    super::with_scratch(&PACK_A, |bufa| {
        super::with_scratch(&PACK_B, |bufb| {
            let na = m.div_ceil(p.mr);
            for jc in (0..n).step_by(NC) {
                let nc = NC.min(n - jc);
                let nb = nc.div_ceil(p.nr);
                for pc in (0..k).step_by(KC) {
                    let kc = KC.min(k - pc);
                    let pa = SyncPtr(super::aligned(bufa, na * p.mr * kc, 1 << 14).as_mut_ptr());
                    let pb = SyncPtr(super::aligned(bufb, nb * p.nr * kc, 1 << 14).as_mut_ptr());
                    each(na + nb, &|i| {
                        // SAFETY: panel `i` of `a` (or `i - na` of `b`) is its own `kc * mr`
                        // (`kc * nr`) stretch of the buffer, sized just above; each `i` is
                        // visited once, so no two threads write the same element.
                        unsafe {
                            if i < na {
                                let out = std::slice::from_raw_parts_mut(
                                    pa.get().add(i * p.mr * kc),
                                    p.mr * kc,
                                );
                                let r0 = i * p.mr;
                                pack(a, r0, p.mr.min(m - r0), pc, kc, (p.mr, p.gather), out);
                            } else {
                                let j = i - na;
                                let out = std::slice::from_raw_parts_mut(
                                    pb.get().add(j * p.nr * kc),
                                    p.nr * kc,
                                );
                                let c0 = jc + j * p.nr;
                                pack(
                                    b.tr(),
                                    c0,
                                    p.nr.min(jc + nc - c0),
                                    pc,
                                    kc,
                                    (p.nr, p.gather),
                                    out,
                                );
                            }
                        }
                    });
                    let blk = Blocks {
                        p,
                        m,
                        na,
                        nb,
                        jc,
                        nc,
                        kc,
                        pa: pa.0,
                        pb: pb.0,
                        c: cp.0,
                        ldc,
                        beta: if pc == 0 { beta } else { 1.0 },
                    };
                    let (ua, ub) = (na.div_ceil(UNIT_PANELS_A), nb.div_ceil(UNIT_PANELS_B));
                    // SAFETY: units cover disjoint blocks of `c` (see `Blocks::unit`).
                    each(ua * ub, &|u| unsafe { blk.unit(u / ub, ua, u % ub, ub) });
                }
            }
        })
    });
}

/// One `(jc, pc)` block's packed operands and where its results go.
struct Blocks {
    p: Path,
    m: usize,
    /// Row panels of `a`, column panels of `b`.
    na: usize,
    nb: usize,
    jc: usize,
    nc: usize,
    kc: usize,
    pa: *const f32,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
    beta: f32,
}

impl Blocks {
    /// Unit `(ia, ib)` of `ua x ub`: the row panels `ia * na / ua..` times the column panels
    /// `ib * nb / ub..` (even cuts), column panel by column panel, so each `b` micro-panel stays
    /// in L1 while the unit's row panels pass over it.
    ///
    /// # Safety
    /// The packed buffers hold `na` and `nb` panels of `kc` columns; `c` covers `m` rows of
    /// `jc + nc` columns at stride `ldc`. Different units write disjoint parts of `c`.
    unsafe fn unit(&self, ia: usize, ua: usize, ib: usize, ub: usize) {
        let p = self.p;
        let (a0, a1) = (ia * self.na / ua, (ia + 1) * self.na / ua);
        let (b0, b1) = (ib * self.nb / ub, (ib + 1) * self.nb / ub);
        for jb in b0..b1 {
            let col = jb * p.nr;
            for ja in a0..a1 {
                let row = ja * p.mr;
                let t = Tile {
                    kc: self.kc,
                    a: self.pa.add(ja * p.mr * self.kc),
                    b: self.pb.add(jb * p.nr * self.kc),
                    c: self.c.add(row * self.ldc + self.jc + col),
                    ldc: self.ldc,
                    rows: p.mr.min(self.m - row),
                    cols: p.nr.min(self.nc - col),
                    beta: self.beta,
                };
                (p.micro)(&t);
            }
        }
    }
}

/// A raw pointer shared by a parallel section whose tasks touch disjoint elements.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: used only for buffers whose tasks write disjoint ranges (see the call sites).
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole `SyncPtr`, not its field).
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: a `Blocks` only reads the packed buffers and writes `c` through disjoint units (see
// `Blocks::unit`), during a section that ends before `gemm_with` returns.
unsafe impl Sync for Blocks {}

thread_local! {
    /// Packed row panels of `a` (grows to the largest, then reused).
    static PACK_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Packed column panels of `b`.
    static PACK_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Packs rows `r0..r0 + rows` and columns `c0..c0 + kc` of `x` into one panel of `w` rows:
/// `out[c * w + r]`, rows past `rows` zero. With `gather` (AVX-512 present), a panel of f32 rows
/// stored contiguously is transposed 16 rows per gather, the rest as [`pack_t`] does.
fn pack(
    x: Mat,
    r0: usize,
    rows: usize,
    c0: usize,
    kc: usize,
    (w, gather): (usize, bool),
    out: &mut [f32],
) {
    match x.data {
        Data::F32(d) => {
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if gather && x.cs == 1 && w.is_multiple_of(16) && 15 * x.rs < (i32::MAX / 4) as usize {
                done = rows - rows % 16;
                // SAFETY: AVX-512F is present (`gather` is set on the avx512 paths only); rows
                // `r0..r0 + done` and columns `c0..c0 + kc` lie inside `d` (the caller checked
                // the operand fits the shape); `out` holds `kc * w` floats, `done <= w`; the row
                // offsets fit the gather's i32 indices (checked just above).
                unsafe { x86::pack_gather(d, x.rs, r0, done, c0, kc, w, out) };
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = gather;
            pack_t(
                d,
                x.rs,
                x.cs,
                r0 + done,
                rows - done,
                c0,
                kc,
                (w, done),
                out,
            )
        }
        Data::Bf16(d) => pack_t(d, x.rs, x.cs, r0, rows, c0, kc, (w, 0), out),
    }
}

/// An element widened to f32 (exactly).
trait Elem: Copy {
    fn f(self) -> f32;
}
impl Elem for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}
impl Elem for bf16 {
    #[inline(always)]
    fn f(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
}

/// [`pack`] on stored elements of `T` into panel rows `off..off + rows` (padding after them):
/// reads along whichever direction is contiguous.
#[allow(clippy::too_many_arguments)]
fn pack_t<T: Elem>(
    d: &[T],
    rs: usize,
    cs: usize,
    r0: usize,
    rows: usize,
    c0: usize,
    kc: usize,
    (w, off): (usize, usize),
    out: &mut [f32],
) {
    let out = &mut out[..kc * w];
    // Panel row `r` (from `off`) is row `base + r` of the matrix.
    let (end, base) = (off + rows, r0 - off);
    if cs == 1 {
        // Rows are contiguous: a transpose into the panel, 4 rows at a time (4 read streams).
        let mut r = off;
        while r + 4 <= end {
            let src: [&[T]; 4] = std::array::from_fn(|q| &d[(base + r + q) * rs + c0..][..kc]);
            for (c, o) in out.chunks_exact_mut(w).enumerate() {
                let o = &mut o[r..r + 4];
                for q in 0..4 {
                    o[q] = src[q][c].f();
                }
            }
            r += 4;
        }
        for r in r..end {
            let src = &d[(base + r) * rs + c0..][..kc];
            for (o, &v) in out.chunks_exact_mut(w).zip(src) {
                o[r] = v.f();
            }
        }
    } else if rs == 1 {
        // Columns are contiguous: a copy per column.
        for (c, o) in out.chunks_exact_mut(w).enumerate() {
            let src = &d[r0 + (c0 + c) * cs..][..rows];
            for (o, &v) in o[off..end].iter_mut().zip(src) {
                *o = v.f();
            }
        }
    } else {
        for (c, o) in out.chunks_exact_mut(w).enumerate() {
            for (r, o) in o[off..end].iter_mut().enumerate() {
                *o = d[(r0 + r) * rs + (c0 + c) * cs].f();
            }
        }
    }
    if end < w {
        out.chunks_exact_mut(w).for_each(|o| o[end..].fill(0.0));
    }
}

/// Vector operations of a micro-kernel (`f32` itself is the one-lane portable vector).
trait Vf: Copy {
    const W: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(p: *const f32) -> Self;
    unsafe fn set1(x: f32) -> Self;
    /// `a * b + c`
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
}

impl Vf for f32 {
    const W: usize = 1;
    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn set1(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        *p = v
    }
}

/// The micro-kernel: `MR x (NV * V::W)` accumulators over the packed panels, then
/// `c = beta * c + acc` (`c` not read when `beta == 0`).
///
/// # Safety
/// `t.a` holds `kc * MR` floats, `t.b` `kc * NV * V::W`; `t.c` covers `t.rows <= MR` rows of
/// `t.cols <= NV * V::W` columns at stride `t.ldc`; `V`'s CPU features are present.
#[inline(always)]
unsafe fn micro<V: Vf, const MR: usize, const NV: usize>(t: &Tile) {
    let nr = NV * V::W;
    let mut acc = [[V::zero(); NV]; MR];
    let (mut ap, mut bp) = (t.a, t.b);
    for _ in 0..t.kc {
        let bv: [V; NV] = std::array::from_fn(|v| V::load(bp.add(v * V::W)));
        for (i, row) in acc.iter_mut().enumerate() {
            let av = V::splat(ap.add(i));
            for (a, &b) in row.iter_mut().zip(&bv) {
                *a = V::fma(av, b, *a);
            }
        }
        ap = ap.add(MR);
        bp = bp.add(nr);
    }
    if t.rows == MR && t.cols == nr {
        let beta = V::set1(t.beta);
        for (i, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                let p = t.c.add(i * t.ldc + v * V::W);
                let r = if t.beta == 0.0 {
                    a
                } else {
                    V::fma(beta, V::load(p), a)
                };
                V::store(p, r);
            }
        }
        return;
    }
    // An edge tile: through a buffer (MR * nr <= 12 * 32).
    let mut buf = [0f32; 384];
    for (i, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            V::store(buf.as_mut_ptr().add(i * nr + v * V::W), a);
        }
    }
    for i in 0..t.rows {
        for j in 0..t.cols {
            let p = t.c.add(i * t.ldc + j);
            let s = buf[i * nr + j];
            *p = if t.beta == 0.0 { s } else { t.beta * *p + s };
        }
    }
}

/// The portable micro-kernel (4 x 4).
///
/// # Safety
/// As [`micro`].
unsafe fn micro_portable(t: &Tile) {
    micro::<f32, 4, 4>(t)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 and AVX-512 vectors of the micro-kernel and their `target_feature` entry points.
    use super::{micro, Tile, Vf};
    use std::arch::x86_64::*;

    macro_rules! vf {
        ($name:ident, $v:ty, $w:expr, $zero:ident, $load:ident, $splat:ident, $set1:ident, $fma:ident, $store:ident) => {
            #[derive(Clone, Copy)]
            pub struct $name($v);
            impl Vf for $name {
                const W: usize = $w;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    $name($zero())
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    $name($load(p))
                }
                #[inline(always)]
                unsafe fn splat(p: *const f32) -> Self {
                    $name($splat(*p))
                }
                #[inline(always)]
                unsafe fn set1(x: f32) -> Self {
                    $name($set1(x))
                }
                #[inline(always)]
                unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                    $name($fma(a.0, b.0, c.0))
                }
                #[inline(always)]
                unsafe fn store(p: *mut f32, v: Self) {
                    $store(p, v.0)
                }
            }
        };
    }
    vf!(
        Z,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps
    );
    vf!(
        Y,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );

    /// Panel rows `0..rows` (a multiple of 16) from rows `r0..` of `d` (row stride `rs`,
    /// contiguous columns `c0..c0 + kc`): `out[c * w + r]`, 16 rows per gather.
    ///
    /// # Safety
    /// AVX-512F is present; those rows and columns lie inside `d`; `15 * rs * 4` fits an i32;
    /// `out` holds `kc * w` floats and `rows <= w`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn pack_gather(
        d: &[f32],
        rs: usize,
        r0: usize,
        rows: usize,
        c0: usize,
        kc: usize,
        w: usize,
        out: &mut [f32],
    ) {
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(rs as i32),
        );
        for r in (0..rows).step_by(16) {
            let src = d.as_ptr().add((r0 + r) * rs + c0);
            let dst = out.as_mut_ptr().add(r);
            for c in 0..kc {
                let v = _mm512_i32gather_ps::<4>(idx, src.add(c));
                _mm512_storeu_ps(dst.add(c * w), v);
            }
        }
    }

    /// # Safety
    /// As [`micro`], on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn micro_avx512(t: &Tile) {
        micro::<Z, 12, 2>(t)
    }

    /// # Safety
    /// As [`micro`], on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn micro_avx2(t: &Tile) {
        micro::<Y, 6, 2>(t)
    }
}

#[cfg(test)]
mod tests {
    //! Every path against [`gemm_ref`] on every transpose case, odd sizes, bf16 operands, `beta`
    //! 0 / 1 / 0.5, single-threaded and on the team.
    use super::*;
    use crate::backend::cpu::rand::rand_vec;
    use crate::backend::cpu::{Compute, Precision};

    /// Max |got - want| relative to the largest |want| (at least 1).
    fn rel_err(got: &[f32], want: &[f32]) -> f32 {
        let scale = want.iter().fold(1f32, |s, v| s.max(v.abs()));
        got.iter()
            .zip(want)
            .fold(0f32, |e, (g, w)| e.max((g - w).abs()))
            / scale
    }

    /// `op` of a row-major `[r, c]` buffer as a `[r, c]` operand (`t`: stored as its transpose).
    fn operand(data: &[f32], r: usize, c: usize, t: bool) -> Mat<'_> {
        if t {
            Mat::t(data, r)
        } else {
            Mat::rows(data, c)
        }
    }

    /// Every available path, alone and on a team of 2, against the reference on one case.
    fn case(m: usize, k: usize, n: usize, ta: bool, tb: bool, beta: f32) {
        let a = rand_vec(m * k, (m * 31 + k) as u64);
        let b = rand_vec(k * n, (n * 17 + k) as u64);
        let ldc = n + 3;
        let c0: Vec<f32> = rand_vec(m * ldc, 9);
        let (am, bm) = (operand(&a, m, k, ta), operand(&b, k, n, tb));
        let mut want = c0.clone();
        gemm_ref(m, k, n, am, bm, beta, &mut want, ldc);
        let compute = Compute::new(Precision::Exact, 2, "threads").unwrap();
        for kern in Kernel::available_all() {
            for team in [false, true] {
                let mut got = c0.clone();
                let c = &mut got;
                let mut go = move || gemm_with(kern, m, k, n, am, bm, beta, c, ldc);
                if team {
                    compute.run(go)
                } else {
                    go()
                }
                let e = rel_err(&got, &want);
                assert!(
                    e < 1e-5 * (k as f32).sqrt().max(1.0),
                    "{} team {team} m {m} k {k} n {n} ta {ta} tb {tb} beta {beta}: rel err {e}",
                    kern.name()
                );
                // The padding columns of `c` are untouched.
                for i in 0..m {
                    assert_eq!(
                        &got[i * ldc + n..(i + 1) * ldc],
                        &c0[i * ldc + n..(i + 1) * ldc]
                    );
                }
            }
        }
    }

    #[test]
    fn every_path_matches_reference() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 3, 7),
            (13, 33, 37),
            (37, 29, 45),
            (25, 300, 70),
        ] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for beta in [0.0, 1.0, 0.5] {
                    case(m, k, n, ta, tb, beta);
                }
            }
        }
        // Past one block of k and of n, big enough for the team.
        for (ta, tb) in [(false, true), (false, false), (true, false)] {
            case(29, 520, 3100, ta, tb, 1.0);
        }
    }

    #[test]
    fn bf16_operands_are_widened_exactly() {
        let (m, k, n) = (19, 70, 41);
        let a = rand_vec(m * k, 1);
        let wb: Vec<bf16> = rand_vec(n * k, 2)
            .iter()
            .map(|&x| bf16::from_f32(x))
            .collect();
        let wf: Vec<f32> = wb.iter().map(|x| x.to_f32()).collect();
        for kern in Kernel::available_all() {
            let mut want = vec![0f32; m * n];
            gemm_with(
                kern,
                m,
                k,
                n,
                Mat::rows(&a, k),
                Mat::t(&wf, k),
                0.0,
                &mut want,
                n,
            );
            let mut got = vec![f32::NAN; m * n];
            gemm_with(
                kern,
                m,
                k,
                n,
                Mat::rows(&a, k),
                Mat::t(&wb, k),
                0.0,
                &mut got,
                n,
            );
            assert_eq!(got, want, "{}", kern.name());
        }
    }

    #[test]
    fn beta_zero_ignores_nan_and_k_zero_scales() {
        let a = [1f32; 6];
        let mut c = vec![f32::NAN; 4];
        gemm(
            2,
            3,
            2,
            Mat::rows(&a[..], 3),
            Mat::rows(&a[..], 2),
            0.0,
            &mut c,
            2,
        );
        assert_eq!(c, vec![3.0; 4]);
        gemm(
            2,
            0,
            2,
            Mat::rows(&a[..], 0),
            Mat::rows(&a[..], 2),
            0.5,
            &mut c,
            2,
        );
        assert_eq!(c, vec![1.5; 4]);
    }
}
