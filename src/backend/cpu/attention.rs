//! Causal grouped-query attention over block-structured (paged) K/V, on the path [`kernel`] selects.
//!
//! Work is split into items of one query row and one KV head: the `group` query heads that share
//! that KV head read its keys and values together (once from memory, then from L1). An item's
//! arithmetic depends only on its query row, its positions and the cache, never on the batch, so a
//! sequence's results are the same alone or batched. [`attention_scalar`] is the reference the SIMD
//! path is tested against: per head, scores, softmax, then the probability-weighted sum of values.

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
        let qd = s.n_heads * s.head_dim;
        let group = s.n_heads / s.n_kv_heads;
        let gw = group * s.head_dim;
        // (sequence, index within it) of every query row.
        owner.clear();
        owner.extend(
            seqs.iter()
                .enumerate()
                .flat_map(|(si, sq)| (0..sq.len).map(move |t| (si, t))),
        );
        let owner = &*owner;
        let simd = kern.has_avx2_fma();
        let work = |idx: usize, o: &mut [f32]| {
            let (r, g) = (idx / s.n_kv_heads, idx % s.n_kv_heads);
            let (si, ti) = owner[r];
            let sq = &seqs[si];
            let pos = sq.start + ti;
            let lo = match s.window {
                Some(w) if pos + 1 > w => pos + 1 - w,
                _ => 0,
            };
            let item = Item {
                q: &q[r * qd + g * gw..r * qd + (g + 1) * gw],
                table: sq.table,
                lo,
                pos,
                kv_col: g * s.head_dim,
            };
            #[cfg(target_arch = "x86_64")]
            if simd {
                SCORES.with(|buf| {
                    let (scores, rows) = &mut *buf.borrow_mut();
                    rows.clear();
                    scores.clear();
                    // Grown in steps of 1024 keys: a decode that lengthens its context by one key
                    // per token reallocates once per 1024 tokens, not at every doubling.
                    let keys = (item.pos + 1 - item.lo).next_multiple_of(1024);
                    rows.reserve_exact(keys);
                    scores.reserve_exact(keys * group);
                    rows.extend((item.lo..=item.pos).map(|j| item.row(j, &s)));
                    assert!(rows.iter().all(|&r| r + s.head_dim <= k.len().min(v.len())));
                    // SAFETY: `simd` is set only for paths whose CPU check covers AVX2 and FMA; every
                    // row offset was checked against `k` and `v` just above.
                    unsafe { x86::item_avx2(&item, k, v, rows, &s, scores, o) }
                });
                return;
            }
            let _ = simd;
            item_scalar(&item, k, v, &s, o);
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
    })
}

thread_local! {
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
    use super::super::simd::x86::hsum256;
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
        let mut inv = [0f32; 64];
        let mut inv_vec = Vec::new();
        let inv: &mut [f32] = if group <= 64 {
            &mut inv[..group]
        } else {
            inv_vec.resize(group, 0.0);
            &mut inv_vec
        };
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
