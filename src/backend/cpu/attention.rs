//! Causal grouped-query attention over block-structured (paged) K/V, on the path [`kernel`] selects.
//!
//! Work is split into items of one query row and one KV head: the `group` query heads that share
//! that KV head read its keys and values together (once from memory, then from L1). An item's
//! arithmetic depends only on its query row, its positions and the cache, never on the batch, so a
//! sequence's results are the same alone or batched. On AVX-512 each call first transposes every
//! sequence's keys (`[head_dim][position]`), so that an item's scores come 16 keys to a vector with
//! no horizontal sums; the transpose is shared by all the sequence's query rows in a prefill.
//! [`attention_scalar`] is the reference the SIMD paths are tested against: per head, scores,
//! softmax, then the probability-weighted sum of values.

use super::simd::{kernel, Kernel};
use super::{dot_f32, softmax, PAR_THRESHOLD};

/// Head layout and masking of an attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Rows per K/V block.
    pub block_size: usize,
    /// Keys further back than this are masked (sliding window), if set.
    pub window: Option<usize>,
}

/// One sequence's slice of a batched attention call: its block table and the positions of its
/// query rows (`start .. start + len`, laid out consecutively in `q`).
#[derive(Debug, Clone, Copy)]
pub struct AttnSeq<'a> {
    pub table: &'a [u32],
    pub start: usize,
    pub len: usize,
}

/// One work item: the query heads of one KV head at one query row.
struct Item<'a> {
    /// `group * head_dim` query values (heads of the group, consecutive).
    q: &'a [f32],
    table: &'a [u32],
    /// Visible keys: positions `lo..=pos`.
    lo: usize,
    pos: usize,
    /// Column of this KV head within a K/V row.
    kv_col: usize,
}

impl Item<'_> {
    /// Element offset of position `j`'s K/V row (this head's columns) in the layer.
    #[inline(always)]
    fn row(&self, j: usize, s: &AttnShape) -> usize {
        let kvd = s.n_kv_heads * s.head_dim;
        (self.table[j / s.block_size] as usize * s.block_size + j % s.block_size) * kvd
            + self.kv_col
    }
}

/// Causal grouped-query attention over block-structured K/V for a batch of sequences.
/// `q`: `[sum(len), n_heads * head_dim]`, sequence after sequence; `k`, `v`: one layer of the store,
/// rows `[num_blocks * block_size, n_kv_heads * head_dim]`, already holding every query position's
/// own key; `out`: like `q`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], seqs: &[AttnSeq], s: AttnShape, out: &mut [f32]) {
    attention_with(kernel(), q, k, v, seqs, s, out)
}

/// The scalar reference of [`attention`].
pub fn attention_scalar(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seqs: &[AttnSeq],
    s: AttnShape,
    out: &mut [f32],
) {
    attention_with(Kernel::Scalar, q, k, v, seqs, s, out)
}

thread_local! {
    /// (sequence, row within it) of every query row of an [`attention_with`] call.
    static OWNER: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn attention_with(
    kern: Kernel,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seqs: &[AttnSeq],
    s: AttnShape,
    out: &mut [f32],
) {
    // The caller's row table, reused between calls (no allocation per layer).
    super::with_scratch(&OWNER, |owner| {
        // (sequence, index within it) of every query row.
        owner.clear();
        owner.extend(
            seqs.iter()
                .enumerate()
                .flat_map(|(si, sq)| (0..sq.len).map(move |t| (si, t))),
        );
        let owner = &*owner;
        #[cfg(target_arch = "x86_64")]
        if matches!(kern, Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::Amx)
            && matches!(s.head_dim, 64 | 128)
        {
            // The keys transposed once per call, shared by every item of their sequence; a
            // sequence of one query row (a decode step) has one item per KV head, which
            // transposes its keys itself into a buffer of its thread, still in L2 when it reads
            // them (the same values: the item computes the same bits either way).
            return super::with_scratch(&KT, |(kt, off)| {
                transpose_all(k, seqs, &s, kt, off);
                let (kt, off) = (&*kt, &*off);
                run_items(q, seqs, s, owner, out, |it, g, si, o| {
                    let npad = (off[si + 1] - off[si]) / (s.n_kv_heads * s.head_dim);
                    if npad == 0 {
                        return super::with_scratch(&KT_ITEM, |kt| {
                            let npad = (it.pos + 1).next_multiple_of(x86::KEYS);
                            let kt = super::aligned(kt, s.head_dim * npad, 1 << 16);
                            // SAFETY: the path's CPU check covers AVX-512F.
                            unsafe { transpose_item(k, it, &s, npad, kt) };
                            with_rows(it, &s, k, v, |scores, rows| {
                                // SAFETY: as below, with `kt` this item's keys transposed.
                                unsafe {
                                    x86::item_avx512(it, kt.as_ptr(), npad, v, rows, &s, scores, o)
                                }
                            })
                        });
                    }
                    let ktp = &kt[off[si] + g * s.head_dim * npad..];
                    with_rows(it, &s, k, v, |scores, rows| {
                        // SAFETY: the path's CPU check covers AVX-512F, AVX2 and FMA; `ktp` holds
                        // this sequence's keys of head `g` transposed, `head_dim * npad` elements
                        // with `npad > pos`; `with_rows` checked every V row offset.
                        unsafe { x86::item_avx512(it, ktp.as_ptr(), npad, v, rows, &s, scores, o) }
                    })
                })
            });
        }
        let simd = kern.has_avx2_fma();
        run_items(q, seqs, s, owner, out, |it, _, _, o| {
            #[cfg(target_arch = "x86_64")]
            if simd {
                return with_rows(it, &s, k, v, |scores, rows| {
                    // SAFETY: `simd` is set only for paths whose CPU check covers AVX2 and FMA;
                    // `with_rows` checked every row offset against `k` and `v`.
                    unsafe { x86::item_avx2(it, k, v, rows, &s, scores, o) }
                });
            }
            let _ = simd;
            item_scalar(it, k, v, &s, o);
        })
    })
}

/// Runs `item(it, kv_head, sequence, out)` for every (query row, KV head) of the call, across the
/// pool when the call is large enough.
fn run_items(
    q: &[f32],
    seqs: &[AttnSeq],
    s: AttnShape,
    owner: &[(usize, usize)],
    out: &mut [f32],
    item: impl Fn(&Item, usize, usize, &mut [f32]) + Sync,
) {
    let qd = s.n_heads * s.head_dim;
    let gw = s.n_heads / s.n_kv_heads * s.head_dim;
    let work = |idx: usize, o: &mut [f32]| {
        let (r, g) = (idx / s.n_kv_heads, idx % s.n_kv_heads);
        let (si, ti) = owner[r];
        let sq = &seqs[si];
        let pos = sq.start + ti;
        let lo = match s.window {
            Some(w) if pos + 1 > w => pos + 1 - w,
            _ => 0,
        };
        let it = Item {
            q: &q[r * qd + g * gw..r * qd + (g + 1) * gw],
            table: sq.table,
            lo,
            pos,
            kv_col: g * s.head_dim,
        };
        item(&it, g, si, o)
    };
    let total: usize = seqs
        .iter()
        .map(|sq| sq.len * (sq.start + sq.len) * qd)
        .sum();
    let out = &mut out[..owner.len() * qd];
    if total < PAR_THRESHOLD {
        out.chunks_mut(gw).enumerate().for_each(|(i, o)| work(i, o));
    } else {
        super::par_chunks_mut(out, gw, work);
    }
}

/// Runs `f(scores, rows)` on this thread's scratch with `rows` holding the K/V row offset of each
/// key the item sees, every one checked to have `head_dim` elements inside `k` and `v`.
#[cfg(target_arch = "x86_64")]
fn with_rows<R>(
    it: &Item,
    s: &AttnShape,
    k: &[f32],
    v: &[f32],
    f: impl FnOnce(&mut Vec<f32>, &[usize]) -> R,
) -> R {
    SCORES.with(|buf| {
        let (scores, rows) = &mut *buf.borrow_mut();
        rows.clear();
        // Grown in steps of 1024 keys: a decode that lengthens its context by one key per token
        // reallocates once per 1024 tokens, not at every doubling. (`scores` keeps its contents:
        // each item sizes it and writes every score it reads.)
        let keys = (it.pos + 1 - it.lo).next_multiple_of(1024);
        let group = it.q.len() / s.head_dim;
        rows.reserve_exact(keys);
        if scores.capacity() < keys * group {
            scores.reserve_exact(keys * group - scores.len());
        }
        rows.extend((it.lo..=it.pos).map(|j| it.row(j, s)));
        assert!(rows.iter().all(|&r| r + s.head_dim <= k.len().min(v.len())));
        f(scores, rows)
    })
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The keys of an [`attention_with`] call transposed (AVX-512 path), and the offset of each
    /// sequence's share (one past the last: the total), grown and reused.
    static KT: std::cell::RefCell<(Vec<f32>, Vec<usize>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Transposes the keys of every sequence of more than one query row and every KV head into `kt`
/// (see `x86::transpose_keys`): sequence `i`'s at `off[i]`, head after head, `head_dim * npad`
/// each, where `npad` is its positions rounded up to 16 (0 for a sequence of one row, whose
/// items transpose their own keys). Split across the pool by (sequence, head).
#[cfg(target_arch = "x86_64")]
fn transpose_all(
    k: &[f32],
    seqs: &[AttnSeq],
    s: &AttnShape,
    kt: &mut Vec<f32>,
    off: &mut Vec<usize>,
) {
    let kvd = s.n_kv_heads * s.head_dim;
    off.clear();
    off.push(0);
    for sq in seqs {
        let npad = match sq.len {
            0 | 1 => 0,
            _ => (sq.start + sq.len).next_multiple_of(x86::KEYS),
        };
        off.push(off.last().copied().unwrap_or(0) + npad * kvd);
    }
    let total = off.last().copied().unwrap_or(0);
    if kt.len() < total {
        // In 1 Mi-element steps, so a decode that grows its context by a key per step
        // reallocates rarely.
        kt.resize(total.next_multiple_of(1 << 20), 0.0);
    }
    struct Out(*mut f32);
    // SAFETY: the tasks write disjoint ranges of `kt`, which outlives the section.
    unsafe impl Sync for Out {}
    let dst = Out(kt.as_mut_ptr());
    let off = &*off;
    let one = |idx: usize| {
        let (si, g) = (idx / s.n_kv_heads, idx % s.n_kv_heads);
        let sq = &seqs[si];
        let n = sq.start + sq.len;
        let npad = (off[si + 1] - off[si]) / kvd;
        if npad == 0 {
            return;
        }
        let it = Item {
            q: &[],
            table: sq.table,
            lo: 0,
            pos: n - 1,
            kv_col: g * s.head_dim,
        };
        let dst = &dst;
        // SAFETY: sequence `si`'s head `g` owns `head_dim * npad` elements of `kt` from this
        // offset (`off` sums them), written by this task only; the path's CPU check covers
        // AVX-512F.
        unsafe {
            let len = s.head_dim * npad;
            let d = std::slice::from_raw_parts_mut(dst.0.add(off[si] + g * len), len);
            transpose_item(k, &it, s, npad, d)
        }
    };
    if total >= PAR_THRESHOLD && seqs.len() * s.n_kv_heads > 1 {
        super::par_for(seqs.len() * s.n_kv_heads, one);
    } else {
        (0..seqs.len() * s.n_kv_heads).for_each(one);
    }
}

/// The keys of `it`'s KV head at positions `0..=it.pos` transposed into `dst` (`head_dim * npad`
/// elements; see `x86::transpose_keys`), every row checked against `k` first.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
unsafe fn transpose_item(k: &[f32], it: &Item, s: &AttnShape, npad: usize, dst: &mut [f32]) {
    let n = it.pos + 1;
    assert!(s.head_dim.is_multiple_of(16) && npad >= n && dst.len() >= s.head_dim * npad);
    assert!((0..n).all(|j| it.row(j, s) + s.head_dim <= k.len()));
    // SAFETY: AVX-512F is present (the caller's guarantee); `head_dim` is a multiple of 16, `dst`
    // holds `head_dim * npad` elements and every row lies inside `k` (asserted above).
    unsafe { x86::transpose_keys(k, n, npad, s.head_dim, |j| it.row(j, s), dst.as_mut_ptr()) }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The keys of one decode item transposed (see [`attention_with`]), grown and reused.
    static KT_ITEM: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Scores of one item (`group * keys`) and its keys' K/V row offsets, grown and reused.
    static SCORES: std::cell::RefCell<(Vec<f32>, Vec<usize>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Reference: per head, scaled dot products, softmax, weighted sum of values.
fn item_scalar(it: &Item, k: &[f32], v: &[f32], s: &AttnShape, o: &mut [f32]) {
    let hd = s.head_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    for (qh, oh) in it.q.chunks_exact(hd).zip(o.chunks_exact_mut(hd)) {
        let mut scores: Vec<f32> = (it.lo..=it.pos)
            .map(|j| dot_f32(qh, &k[it.row(j, s)..it.row(j, s) + hd]) * scale)
            .collect();
        softmax(&mut scores);
        oh.fill(0.0);
        for (p, j) in scores.iter().zip(it.lo..=it.pos) {
            let r = it.row(j, s);
            for (a, &b) in oh.iter_mut().zip(&v[r..r + hd]) {
                *a += p * b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! AVX2+FMA attention item and the vector `exp` it shares with the elementwise ops.
    use super::super::simd::x86::{hsum256, hsum512};
    use super::*;
    use std::arch::x86_64::*;

    /// `exp(x)` per lane, within 2 ulp of libm over `[-87, 88.3]` (inputs are clamped there; below
    /// the result is about 1e-38 instead of a denormal or zero). Cephes' range reduction by
    /// `ln 2` in two parts and its degree-5 polynomial.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp256(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.3),
        );
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let pow2 = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
    }

    /// One reciprocal softmax sum per head of an item: on the stack up to 64 heads.
    struct Inverses {
        stack: [f32; 64],
        heap: Vec<f32>,
    }

    impl Default for Inverses {
        fn default() -> Self {
            Inverses {
                stack: [0.0; 64],
                heap: Vec::new(),
            }
        }
    }

    impl Inverses {
        fn heads(&mut self, group: usize) -> &mut [f32] {
            if group <= self.stack.len() {
                &mut self.stack[..group]
            } else {
                self.heap.resize(group, 0.0);
                &mut self.heap
            }
        }
    }

    /// The 8 lane-sums of `a[0..8]` as one vector (lane t = sum of `a[t]`).
    #[inline(always)]
    unsafe fn hsum8(a: &[__m256; 8]) -> __m256 {
        let s01 = _mm256_hadd_ps(a[0], a[1]);
        let s23 = _mm256_hadd_ps(a[2], a[3]);
        let s45 = _mm256_hadd_ps(a[4], a[5]);
        let s67 = _mm256_hadd_ps(a[6], a[7]);
        let s0123 = _mm256_hadd_ps(s01, s23);
        let s4567 = _mm256_hadd_ps(s45, s67);
        _mm256_add_ps(
            _mm256_permute2f128_ps(s0123, s4567, 0x20),
            _mm256_permute2f128_ps(s0123, s4567, 0x31),
        )
    }

    /// One item: scores of every head of the group against keys 8 at a time, a vectorised softmax,
    /// then the weighted sum of values 8 dims x 8 accumulators at a time.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `rows` holds the K/V row offset of each visible key, each
    /// with `head_dim` elements inside `k` and `v`; `o` holds `group * head_dim` values.
    ///
    /// Longer than 100 lines on purpose: scores, softmax and the weighted sum are one loop nest
    /// over the same score buffer; split across calls their accumulators would leave registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn item_avx2(
        it: &Item,
        k: &[f32],
        v: &[f32],
        rows: &[usize],
        s: &AttnShape,
        scores: &mut Vec<f32>,
        o: &mut [f32],
    ) {
        let hd = s.head_dim;
        let main = hd - hd % 8;
        let n = it.pos + 1 - it.lo;
        let group = it.q.len() / hd;
        let scale = 1.0 / (hd as f32).sqrt();
        scores.clear();
        scores.resize(group * n, 0.0);
        let (kp, vp) = (k.as_ptr(), v.as_ptr());
        // Scores: 8 keys at a time (2 KB at head_dim 64, kept in L1) against every head.
        let mut j = 0;
        while j < n {
            let keys = &rows[j..(j + 8).min(n)];
            for h in 0..group {
                let qh = it.q.as_ptr().add(h * hd);
                let sc = scores.as_mut_ptr().add(h * n + j);
                if keys.len() == 8 {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    let mut d = 0;
                    while d < main {
                        let qv = _mm256_loadu_ps(qh.add(d));
                        for (a, &r) in acc.iter_mut().zip(keys) {
                            *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp.add(r + d)), *a);
                        }
                        d += 8;
                    }
                    let mut dots = [0f32; 8];
                    _mm256_storeu_ps(dots.as_mut_ptr(), hsum8(&acc));
                    for (t, &r) in keys.iter().enumerate() {
                        for e in main..hd {
                            dots[t] += *qh.add(e) * *kp.add(r + e);
                        }
                        *sc.add(t) = dots[t] * scale;
                    }
                } else {
                    for (t, &r) in keys.iter().enumerate() {
                        let mut acc = _mm256_setzero_ps();
                        let mut d = 0;
                        while d < main {
                            let (qv, kv) =
                                (_mm256_loadu_ps(qh.add(d)), _mm256_loadu_ps(kp.add(r + d)));
                            acc = _mm256_fmadd_ps(qv, kv, acc);
                            d += 8;
                        }
                        let mut dot = hsum256(acc);
                        for e in main..hd {
                            dot += *qh.add(e) * *kp.add(r + e);
                        }
                        *sc.add(t) = dot * scale;
                    }
                }
            }
            j += 8;
        }
        // Softmax numerators in place; each head's normalisation is applied to its output.
        let mut inv = Inverses::default();
        let inv = inv.heads(group);
        for (h, row) in scores.chunks_exact_mut(n).enumerate() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mv = _mm256_set1_ps(max);
            let mut sum = _mm256_setzero_ps();
            let mut c = row.chunks_exact_mut(8);
            for ch in &mut c {
                let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(ch.as_ptr()), mv));
                _mm256_storeu_ps(ch.as_mut_ptr(), e);
                sum = _mm256_add_ps(sum, e);
            }
            let mut total = hsum256(sum);
            let tail = c.into_remainder();
            if !tail.is_empty() {
                let mut buf = [f32::NEG_INFINITY; 8];
                buf[..tail.len()].copy_from_slice(tail);
                let mut e = [0f32; 8];
                let x = _mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), mv);
                _mm256_storeu_ps(e.as_mut_ptr(), exp256(x));
                for (t, x) in tail.iter_mut().enumerate() {
                    *x = e[t];
                    total += e[t];
                }
            }
            inv[h] = 1.0 / total;
        }
        // Values: blocks of 32 keys (kept in L1) into every head's output, 64 dims at a time.
        o.fill(0.0);
        let op = o.as_mut_ptr();
        let mut j0 = 0;
        while j0 < n {
            let keys = &rows[j0..(j0 + 32).min(n)];
            for h in 0..group {
                let ps = &scores[h * n + j0..h * n + j0 + keys.len()];
                let oh = op.add(h * hd);
                let mut d0 = 0;
                while d0 < main {
                    let w = ((main - d0) / 8).min(8);
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for (t, a) in acc.iter_mut().enumerate().take(w) {
                        *a = _mm256_loadu_ps(oh.add(d0 + 8 * t));
                    }
                    for (&p, &r) in ps.iter().zip(keys) {
                        let pv = _mm256_set1_ps(p);
                        let vr = vp.add(r + d0);
                        for (t, a) in acc.iter_mut().enumerate().take(w) {
                            *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr.add(8 * t)), *a);
                        }
                    }
                    for (t, a) in acc.iter().enumerate().take(w) {
                        _mm256_storeu_ps(oh.add(d0 + 8 * t), *a);
                    }
                    d0 += 8 * w;
                }
                for e in main..hd {
                    let mut a = *oh.add(e);
                    for (&p, &r) in ps.iter().zip(keys) {
                        a += p * *vp.add(r + e);
                    }
                    *oh.add(e) = a;
                }
            }
            j0 += 32;
        }
        for (oh, &iv) in o.chunks_exact_mut(hd).zip(inv.iter()) {
            oh.iter_mut().for_each(|x| *x *= iv);
        }
    }

    /// Keys per block of the transposed keys: one vector of scores.
    pub(super) const KEYS: usize = 16;

    /// Writes the keys of one KV head of one sequence transposed, `[head_dim][npad]` at `kt`:
    /// element `d` of the key at position `j` (for `j < n`; zero up to `npad`, a multiple of
    /// [`KEYS`]) goes to `kt[d * npad + j]`. `row(j)` is the offset of position `j`'s K row (this
    /// head's columns) in `k`.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `head_dim` is a multiple of 16; `kt` holds `head_dim * npad`
    /// elements; every `row(j) + head_dim <= k.len()` for `j < n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_keys(
        k: &[f32],
        n: usize,
        npad: usize,
        head_dim: usize,
        row: impl Fn(usize) -> usize,
        kt: *mut f32,
    ) {
        let kp = k.as_ptr();
        let mut j0 = 0;
        while j0 < npad {
            let mut offs = [usize::MAX; KEYS];
            for (t, o) in offs.iter_mut().enumerate() {
                if j0 + t < n {
                    *o = row(j0 + t);
                }
            }
            let mut d0 = 0;
            while d0 < head_dim {
                let mut r = [_mm512_setzero_si512(); 16];
                for (v, &o) in r.iter_mut().zip(&offs) {
                    if o != usize::MAX {
                        *v = _mm512_loadu_si512(kp.add(o + d0) as *const _);
                    }
                }
                let t = super::super::bcast::transpose(&r);
                for (l, v) in t.iter().enumerate() {
                    _mm512_storeu_si512(kt.add((d0 + l) * npad + j0) as *mut _, *v);
                }
                d0 += 16;
            }
            j0 += KEYS;
        }
    }

    /// Scores of `H` heads (queries transposed at `q`: element `d` of head `h` at `q[d * 8 + h]`)
    /// against the [`KEYS`] keys of the transposed block at `kt` (stride `npad`): per head and key,
    /// the products summed over the dimensions in order, one fused multiply-add each, then scaled;
    /// lanes outside `valid` are minus infinity. Stored at `sc`, stride `w` between heads.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn qk_block<const H: usize, const B: usize>(
        q: *const f32,
        hd: usize,
        kt: *const f32,
        npad: usize,
        scale: f32,
        valid: [__mmask16; B],
        sc: *mut f32,
        w: usize,
    ) {
        // `B` blocks of keys side by side share each broadcast query element.
        let mut acc = [[_mm512_setzero_ps(); B]; H];
        for d in 0..hd {
            let mut kv = [_mm512_setzero_ps(); B];
            for (c, x) in kv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(kt.add(d * npad + c * KEYS));
            }
            let qd = q.add(d * 8);
            for (h, ah) in acc.iter_mut().enumerate() {
                let qv = _mm512_set1_ps(*qd.add(h));
                for (a, &x) in ah.iter_mut().zip(&kv) {
                    *a = _mm512_fmadd_ps(qv, x, *a);
                }
            }
        }
        let (sv, neg) = (_mm512_set1_ps(scale), _mm512_set1_ps(f32::NEG_INFINITY));
        for (h, ah) in acc.iter().enumerate() {
            for (c, &a) in ah.iter().enumerate() {
                let x = _mm512_mask_blend_ps(valid[c], neg, _mm512_mul_ps(a, sv));
                _mm512_storeu_ps(sc.add(h * w + c * KEYS), x);
            }
        }
    }

    /// [`qk_block`] for `hn <= 8` heads.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn qk_heads<const B: usize>(
        hn: usize,
        q: *const f32,
        hd: usize,
        kt: *const f32,
        npad: usize,
        scale: f32,
        m: [__mmask16; B],
        sc: *mut f32,
        w: usize,
    ) {
        match hn {
            1 => qk_block::<1, B>(q, hd, kt, npad, scale, m, sc, w),
            2 => qk_block::<2, B>(q, hd, kt, npad, scale, m, sc, w),
            3 => qk_block::<3, B>(q, hd, kt, npad, scale, m, sc, w),
            4 => qk_block::<4, B>(q, hd, kt, npad, scale, m, sc, w),
            5 => qk_block::<5, B>(q, hd, kt, npad, scale, m, sc, w),
            6 => qk_block::<6, B>(q, hd, kt, npad, scale, m, sc, w),
            7 => qk_block::<7, B>(q, hd, kt, npad, scale, m, sc, w),
            _ => qk_block::<8, B>(q, hd, kt, npad, scale, m, sc, w),
        }
    }

    /// Values of keys `j0..j1` (K/V row offsets `rows[j - lo]`) into the outputs of `H` heads at
    /// `o` (stride `NV * 16`), weighted by their numerators at `p` (stride `w`, key `j` at
    /// `j - base`): per output element, one fused multiply-add per key, in key order.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv_block<const NV: usize, const H: usize>(
        v: *const f32,
        rows: &[usize],
        lo: usize,
        j0: usize,
        j1: usize,
        p: *const f32,
        w: usize,
        base: usize,
        o: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; H];
        for (h, ah) in acc.iter_mut().enumerate() {
            for (e, a) in ah.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(o.add(h * NV * 16 + e * 16));
            }
        }
        for j in j0..j1 {
            let r = v.add(rows[j - lo]);
            let mut vv = [_mm512_setzero_ps(); NV];
            for (e, x) in vv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(r.add(e * 16));
            }
            for (h, ah) in acc.iter_mut().enumerate() {
                let pv = _mm512_set1_ps(*p.add(h * w + j - base));
                for (a, &x) in ah.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(pv, x, *a);
                }
            }
        }
        for (h, ah) in acc.iter().enumerate() {
            for (e, &a) in ah.iter().enumerate() {
                _mm512_storeu_ps(o.add(h * NV * 16 + e * 16), a);
            }
        }
    }

    /// All `group` heads of an item's value pass, `HP` at a time (the last pass fewer).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv_heads<const NV: usize, const HP: usize>(
        v: *const f32,
        rows: &[usize],
        lo: usize,
        j0: usize,
        j1: usize,
        p: *const f32,
        w: usize,
        base: usize,
        o: *mut f32,
        group: usize,
    ) {
        let hd = NV * 16;
        let mut h = 0;
        while h < group {
            let (ph, oh) = (p.add(h * w), o.add(h * hd));
            match (group - h).min(HP) {
                1 => pv_block::<NV, 1>(v, rows, lo, j0, j1, ph, w, base, oh),
                2 => pv_block::<NV, 2>(v, rows, lo, j0, j1, ph, w, base, oh),
                3 => pv_block::<NV, 3>(v, rows, lo, j0, j1, ph, w, base, oh),
                _ => pv_block::<NV, 4>(v, rows, lo, j0, j1, ph, w, base, oh),
            }
            h += HP;
        }
    }

    /// One item on AVX-512, with the keys transposed (`kt`: this sequence's keys of this KV head,
    /// `[head_dim][npad]`, see [`transpose_keys`]): scores 16 keys to a vector with no horizontal
    /// sums, a vectorised softmax, then the values 16 dimensions to a vector for up to 4 heads at
    /// once, in blocks of 64 keys (kept in L1). Every score and output depends only on the item's
    /// query row, its positions and the cache, so a row's result is the same alone or batched.
    ///
    /// # Safety
    /// The CPU supports AVX-512F, AVX2 and FMA; `head_dim` is 64 or 128; `kt` holds the item's keys
    /// transposed for positions up to `pos` (`npad > pos`); `rows` holds the V row offset of each
    /// visible key, each with `head_dim` elements inside `v`; `o` holds `group * head_dim` values.
    ///
    /// Longer than 100 lines on purpose: the three phases share blocks of 64 keys kept in L1 and
    /// up to 4 heads' accumulators in registers; split across calls they would spill.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn item_avx512(
        it: &Item,
        kt: *const f32,
        npad: usize,
        v: &[f32],
        rows: &[usize],
        s: &AttnShape,
        scores: &mut Vec<f32>,
        o: &mut [f32],
    ) {
        let hd = s.head_dim;
        let group = it.q.len() / hd;
        let scale = 1.0 / (hd as f32).sqrt();
        let (b0, b1) = (it.lo / KEYS, it.pos / KEYS + 1);
        let w = (b1 - b0) * KEYS;
        let base = b0 * KEYS;
        // Grown, never cleared: every score is written below before it is read.
        if scores.len() < group * w {
            scores.resize(group * w, 0.0);
        }
        let sp = scores.as_mut_ptr();
        // The queries transposed, 8 heads to a dimension, so that each broadcast is at a fixed
        // offset from one pointer.
        let mut qt = [0f32; 8 * 128];
        // Keys `lo..=pos` of block `b`.
        let valid = |b: usize| -> __mmask16 {
            let mut m = u16::MAX;
            if b == b0 {
                m &= u16::MAX << (it.lo % KEYS);
            }
            if b + 1 == b1 {
                m &= u16::MAX >> (KEYS - 1 - it.pos % KEYS);
            }
            m
        };
        let mut h = 0;
        while h < group {
            let hn = (group - h).min(8);
            for d in 0..hd {
                for t in 0..hn {
                    qt[d * 8 + t] = it.q[(h + t) * hd + d];
                }
            }
            let qh = qt.as_ptr();
            let mut b = b0;
            while b < b1 {
                let (ktb, sc) = (kt.add(b * KEYS), sp.add(h * w + (b - b0) * KEYS));
                if b + 2 <= b1 {
                    let m = [valid(b), valid(b + 1)];
                    qk_heads::<2>(hn, qh, hd, ktb, npad, scale, m, sc, w);
                    b += 2;
                } else {
                    qk_heads::<1>(hn, qh, hd, ktb, npad, scale, [valid(b)], sc, w);
                    b += 1;
                }
            }
            h += 8;
        }
        // Softmax numerators in place (masked keys 0); each head's normalisation is applied to
        // its output.
        let mut inv = Inverses::default();
        let inv = inv.heads(group);
        for (h, iv) in inv.iter_mut().enumerate() {
            let row = sp.add(h * w);
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            for b in 0..b1 - b0 {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(row.add(b * KEYS)));
            }
            let mv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            let mut sum = _mm512_setzero_ps();
            for b in 0..b1 - b0 {
                let x = _mm512_sub_ps(_mm512_loadu_ps(row.add(b * KEYS)), mv);
                let lo8 = exp256(_mm512_castps512_ps256(x));
                let hi8 = exp256(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(x),
                )));
                let e = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castpd256_pd512(_mm256_castps_pd(lo8)),
                    _mm256_castps_pd(hi8),
                ));
                let e = _mm512_maskz_mov_ps(valid(b0 + b), e);
                _mm512_storeu_ps(row.add(b * KEYS), e);
                sum = _mm512_add_ps(sum, e);
            }
            *iv = 1.0 / hsum512(sum);
        }
        // Values: blocks of 64 keys into every head's output.
        o.fill(0.0);
        let (vp, op) = (v.as_ptr(), o.as_mut_ptr());
        let mut j0 = it.lo;
        while j0 <= it.pos {
            let j1 = (j0 + 64).min(it.pos + 1);
            if hd == 64 {
                pv_heads::<4, 4>(vp, rows, it.lo, j0, j1, sp, w, base, op, group);
            } else {
                pv_heads::<8, 2>(vp, rows, it.lo, j0, j1, sp, w, base, op, group);
            }
            j0 = j1;
        }
        for (oh, &iv) in o.chunks_exact_mut(hd).zip(inv.iter()) {
            oh.iter_mut().for_each(|x| *x *= iv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::tests::rand_vec;
    use super::*;

    /// Every available path against the scalar reference: MHA and GQA, head dims with and without
    /// a tail, sliding windows, several sequences of prefill and decode rows over shuffled blocks;
    /// and each row's result is the same computed alone.
    #[test]
    fn paths_match_scalar_reference() {
        for &(n_heads, n_kv, hd, window) in &[
            (14, 2, 64, None),
            (4, 4, 36, None),
            (6, 2, 128, Some(11)),
            (3, 1, 20, None),
        ] {
            let bs = 4;
            let nb = 40;
            let kvd = n_kv * hd;
            let qd = n_heads * hd;
            // Scores of a few units so the softmax is not flat.
            let k: Vec<f32> = rand_vec(nb * bs * kvd, 3).iter().map(|x| x * 3.0).collect();
            let v = rand_vec(nb * bs * kvd, 4);
            let t1: Vec<u32> = (0..20).rev().collect();
            let t2: Vec<u32> = (20..40).collect();
            let seqs = [
                AttnSeq {
                    table: &t1,
                    start: 0,
                    len: 37,
                },
                AttnSeq {
                    table: &t2,
                    start: 70,
                    len: 1,
                },
                AttnSeq {
                    table: &t1,
                    start: 37,
                    len: 5,
                },
            ];
            let rows: usize = seqs.iter().map(|s| s.len).sum();
            let q = rand_vec(rows * qd, 5);
            let shape = AttnShape {
                n_heads,
                n_kv_heads: n_kv,
                head_dim: hd,
                block_size: bs,
                window,
            };
            let mut want = vec![0f32; rows * qd];
            attention_scalar(&q, &k, &v, &seqs, shape, &mut want);
            for kern in Kernel::available_all() {
                let mut got = vec![f32::NAN; rows * qd];
                attention_with(kern, &q, &k, &v, &seqs, shape, &mut got);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 2e-6 + 2e-5 * b.abs(),
                        "{} h{n_heads}/{n_kv} d{hd} {window:?} [{i}]: {a} vs {b}",
                        kern.name()
                    );
                }
                // Row 40 (sequence 3, position 39) alone.
                let alone = [AttnSeq {
                    table: &t1,
                    start: 39,
                    len: 1,
                }];
                let mut one = vec![0f32; qd];
                attention_with(kern, &q[40 * qd..41 * qd], &k, &v, &alone, shape, &mut one);
                assert_eq!(&one[..], &got[40 * qd..41 * qd], "{}", kern.name());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_matches_libm() {
        if !Kernel::Avx2.available() {
            return;
        }
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.2 {
            let xs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 1.37e-3);
            let mut got = [0f32; 8];
            // SAFETY: AVX2 and FMA are present (checked above).
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(got.as_mut_ptr(), x86::exp256(_mm256_loadu_ps(xs.as_ptr())));
            }
            for (g, &xi) in got.iter().zip(&xs) {
                let want = (xi as f64).exp();
                worst = worst.max(((*g as f64 - want) / want).abs() as f32);
            }
            x += 0.0117;
        }
        assert!(worst < 2.5e-7, "max relative error {worst}");
    }
}
