//! Forward and backward kernels of the trainable decoder: f32 activations, f32 gradients, CPU.
//!
//! Each op comes as a forward that saves what its backward needs, and a backward that takes the
//! output gradient and returns (or accumulates) the input and parameter gradients:
//! * [`gemm`]: the one matrix product (strided operands, so `x @ W.T`, `dy @ W` and `dy.T @ x` are
//!   the same call): the CPU backend's blocked, packed, threaded GEMM
//!   ([`crate::backend::cpu::gemm`], tested there against its scalar reference on every transpose);
//! * [`rms_norm_fwd`] / [`rms_norm_bwd`];
//! * [`rope_rows`] (the backward of RoPE is RoPE by the negated angle);
//! * [`attention_fwd`] / [`attention_bwd`]: causal grouped-query attention over *packed* rows — each
//!   row sees an optional shared prefix plus its own segment up to itself ([`RowCtx`]), which covers
//!   sequence packing and prefix-shared preference pairs. The backward recomputes the probabilities
//!   from the saved log-sum-exp instead of storing `[heads, t, t]`;
//! * [`silu_mul_fwd`] / [`silu_mul_bwd`] for the gated MLP.
//!
//! Finite-difference checks of every backward live in this file's tests.

use rayon::prelude::*;

use crate::backend::cpu;

pub use crate::backend::cpu::gemm::{gemm, Mat};

/// Work below this many multiply-adds runs on the calling thread.
const PAR_FLOPS: usize = 1 << 18;

/// RMSNorm over rows of width `g.len()`: `y = g * x * inv`, `inv = 1/sqrt(mean(x^2) + eps)` saved
/// per row (`inv[t]`).
pub fn rms_norm_fwd(x: &[f32], g: &[f32], eps: f32, y: &mut [f32], inv: &mut [f32]) {
    let d = g.len();
    for ((xr, yr), iv) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(inv) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        *iv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &w) in yr.iter_mut().zip(xr).zip(g) {
            *o = w * (v * *iv);
        }
    }
}

/// RMSNorm backward: `dx += ...` (accumulates, for the residual stream) and `dg += ...` if given.
pub fn rms_norm_bwd(
    x: &[f32],
    g: &[f32],
    inv: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mut dg: Option<&mut [f32]>,
) {
    let d = g.len();
    for (((xr, dyr), dxr), &r) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(inv)
    {
        // dx = r * dy*g - x * r^3 / d * sum(dy*g*x)
        let dot: f32 = xr.iter().zip(dyr).zip(g).map(|((a, b), c)| a * b * c).sum();
        let c = r * r * r * dot / d as f32;
        for i in 0..d {
            dxr[i] += r * dyr[i] * g[i] - xr[i] * c;
        }
        if let Some(dg) = dg.as_deref_mut() {
            for i in 0..d {
                dg[i] += dyr[i] * xr[i] * r;
            }
        }
    }
}

/// RoPE on every row of `x` (`[t, n_heads * head_dim]`) at its own position `pos[row]`. With
/// `inverse`, rotates by the negated angle: the transpose, i.e. RoPE's backward.
pub fn rope_rows(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    inv_freq: &[f32],
    pos: &[usize],
    inverse: bool,
) {
    let neg: Vec<f32>;
    let freq = if inverse {
        neg = inv_freq.iter().map(|f| -f).collect();
        &neg[..]
    } else {
        inv_freq
    };
    for (row, &p) in x.chunks_exact_mut(n_heads * head_dim).zip(pos) {
        cpu::rope(row, n_heads, head_dim, freq, p);
    }
}

/// Which keys one packed row attends to: `prefix` (a half-open row range, possibly empty) and its
/// own segment from row `own` up to and including itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCtx {
    pub prefix: (usize, usize),
    pub own: usize,
}

/// Attention geometry.
#[derive(Debug, Clone, Copy)]
pub struct AttnDims {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Keys whose position is this far back or further are masked (sliding window), if set.
    pub window: Option<usize>,
}

/// The key rows visible to row `i`.
fn keys(i: usize, ctx: &[RowCtx], pos: &[usize], window: Option<usize>) -> Vec<usize> {
    let c = ctx[i];
    (c.prefix.0..c.prefix.1)
        .chain(c.own..=i)
        .filter(|&j| window.is_none_or(|w| pos[i] < pos[j] + w))
        .collect()
}

/// The operands of one attention call.
struct Att<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    ctx: &'a [RowCtx],
    pos: &'a [usize],
    d: AttnDims,
    /// Run the row/head bodies compiled for AVX2+FMA (see [`wide`]).
    simd: bool,
}

impl Att<'_> {
    fn new<'a>(
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        ctx: &'a [RowCtx],
        pos: &'a [usize],
        d: AttnDims,
    ) -> Att<'a> {
        Att {
            q,
            k,
            v,
            ctx,
            pos,
            d,
            simd: cpu::kernel().has_avx2_fma(),
        }
    }
}

/// `f()`, compiled for AVX2+FMA when `simd` (the path is only selected where the CPU has them):
/// the same scalar code auto-vectorized 8 lanes wide instead of SSE2's 4, the same operations in
/// the same order, so the same results. `f` is one of the `#[inline(always)]` bodies below.
#[inline(always)]
fn wide<R>(simd: bool, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if simd {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: `simd` comes from a kernel path that is only selected on CPUs with AVX2+FMA.
        return unsafe { run(f) };
    }
    let _ = simd;
    f()
}

/// Attention forward. `q`: `[t, n_heads*hd]`, `k`, `v`: `[t, n_kv_heads*hd]` (already rotated);
/// writes `out` `[t, n_heads*hd]` and `lse` `[t, n_heads]` (log-sum-exp of the scaled scores).
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ctx: &[RowCtx],
    pos: &[usize],
    d: AttnDims,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let a = Att::new(q, k, v, ctx, pos, d);
    let (qd, nh) = (d.n_heads * d.head_dim, d.n_heads);
    let t = ctx.len();
    let work = |ti: usize, o: &mut [f32], l: &mut [f32]| wide(a.simd, || fwd_row(&a, ti, o, l));
    if t * t * qd < PAR_FLOPS {
        for (ti, (o, l)) in out.chunks_mut(qd).zip(lse.chunks_mut(nh)).enumerate() {
            work(ti, o, l);
        }
    } else {
        out.par_chunks_mut(qd)
            .zip(lse.par_chunks_mut(nh))
            .enumerate()
            .for_each(|(ti, (o, l))| work(ti, o, l));
    }
}

/// One row of [`attention_fwd`], every head.
#[inline(always)]
fn fwd_row(a: &Att, ti: usize, o: &mut [f32], l: &mut [f32]) {
    let (d, q, k, v) = (a.d, a.q, a.k, a.v);
    let (hd, nh) = (d.head_dim, d.n_heads);
    let (qd, kvd, group) = (nh * hd, d.n_kv_heads * hd, nh / d.n_kv_heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let ks = keys(ti, a.ctx, a.pos, d.window);
    let mut s = vec![0f32; ks.len()];
    for h in 0..nh {
        let qh = &q[ti * qd + h * hd..][..hd];
        let kv0 = (h / group) * hd;
        for (x, &j) in s.iter_mut().zip(&ks) {
            *x = cpu::dot_f32(qh, &k[j * kvd + kv0..][..hd]) * scale;
        }
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = s
            .iter_mut()
            .map(|x| {
                *x = (*x - max).exp();
                *x
            })
            .sum();
        l[h] = max + sum.ln();
        let oh = &mut o[h * hd..(h + 1) * hd];
        oh.fill(0.0);
        for (p, &j) in s.iter().zip(&ks) {
            let w = p / sum;
            for (a, &b) in oh.iter_mut().zip(&v[j * kvd + kv0..][..hd]) {
                *a += w * b;
            }
        }
    }
}

/// Attention backward: writes `dq` `[t, n_heads*hd]`, `dk`, `dv` `[t, n_kv_heads*hd]` (overwritten)
/// from `dout`, recomputing probabilities as `exp(score - lse)`. Parallel over key/value heads, each
/// of which owns its columns of `dk`/`dv` and its query heads' columns of `dq`.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    ctx: &[RowCtx],
    pos: &[usize],
    d: AttnDims,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let a = Att::new(q, k, v, ctx, pos, d);
    let (hd, nh, nkv) = (d.head_dim, d.n_heads, d.n_kv_heads);
    let (qd, kvd, group) = (nh * hd, nkv * hd, nh / nkv);
    let t = ctx.len();
    let key_lists: Vec<Vec<usize>> = (0..t).map(|i| keys(i, ctx, pos, d.window)).collect();
    let head = |g: usize| wide(a.simd, || bwd_head(&a, &key_lists, out, lse, dout, g));
    let blocks: Vec<_> = if t * t * qd < PAR_FLOPS {
        (0..nkv).map(head).collect()
    } else {
        (0..nkv).into_par_iter().map(head).collect()
    };
    for (g, (dqg, dkg, dvg)) in blocks.into_iter().enumerate() {
        for i in 0..t {
            dq[i * qd + g * group * hd..][..group * hd]
                .copy_from_slice(&dqg[i * group * hd..][..group * hd]);
            dk[i * kvd + g * hd..][..hd].copy_from_slice(&dkg[i * hd..][..hd]);
            dv[i * kvd + g * hd..][..hd].copy_from_slice(&dvg[i * hd..][..hd]);
        }
    }
}

/// Key/value head `g` of [`attention_bwd`]: its (dq block `[t, group*hd]`, dk block `[t, hd]`,
/// dv block `[t, hd]`).
#[inline(always)]
fn bwd_head(
    a: &Att,
    key_lists: &[Vec<usize>],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    g: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (d, q, k, v) = (a.d, a.q, a.k, a.v);
    let (hd, nh) = (d.head_dim, d.n_heads);
    let (qd, kvd, group) = (nh * hd, d.n_kv_heads * hd, nh / d.n_kv_heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let t = key_lists.len();
    let mut dqg = vec![0f32; t * group * hd];
    let mut dkg = vec![0f32; t * hd];
    let mut dvg = vec![0f32; t * hd];
    let kv0 = g * hd;
    for (i, ks) in key_lists.iter().enumerate() {
        for hh in 0..group {
            let h = g * group + hh;
            let qh = &q[i * qd + h * hd..][..hd];
            let oh = &out[i * qd + h * hd..][..hd];
            let doh = &dout[i * qd + h * hd..][..hd];
            let delta = cpu::dot_f32(doh, oh);
            let l = lse[i * nh + h];
            let dqh = &mut dqg[(i * group + hh) * hd..][..hd];
            for &j in ks {
                let kj = &k[j * kvd + kv0..][..hd];
                let vj = &v[j * kvd + kv0..][..hd];
                let p = (cpu::dot_f32(qh, kj) * scale - l).exp();
                let ds = p * (cpu::dot_f32(doh, vj) - delta) * scale;
                let (dkj, dvj) = (&mut dkg[j * hd..][..hd], &mut dvg[j * hd..][..hd]);
                for x in 0..hd {
                    dqh[x] += ds * kj[x];
                    dkj[x] += ds * qh[x];
                    dvj[x] += p * doh[x];
                }
            }
        }
    }
    (dqg, dkg, dvg)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Gated MLP activation over rows `gu` `[t, 2*inter]` (gate | up): `act = silu(gate) * up`.
pub fn silu_mul_fwd(gu: &[f32], inter: usize, act: &mut [f32]) {
    for (row, a) in gu.chunks_exact(2 * inter).zip(act.chunks_exact_mut(inter)) {
        let (g, u) = row.split_at(inter);
        for i in 0..inter {
            a[i] = g[i] * sigmoid(g[i]) * u[i];
        }
    }
}

/// Backward of [`silu_mul_fwd`]: `dgu` `[t, 2*inter]` (overwritten) from `dact` `[t, inter]`.
pub fn silu_mul_bwd(gu: &[f32], dact: &[f32], inter: usize, dgu: &mut [f32]) {
    for ((row, da), dr) in gu
        .chunks_exact(2 * inter)
        .zip(dact.chunks_exact(inter))
        .zip(dgu.chunks_exact_mut(2 * inter))
    {
        let (g, u) = row.split_at(inter);
        let (dg, du) = dr.split_at_mut(inter);
        for i in 0..inter {
            let s = sigmoid(g[i]);
            du[i] = da[i] * g[i] * s;
            dg[i] = da[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
        }
    }
}

/// Softmax cross-entropy on logits rows in place: returns `sum_r w * (lse_r - logit_r[y_r])` and
/// leaves `w * (softmax - onehot)` (the logits gradient) in `logits`. Rows run in parallel; the
/// loss is summed in row order.
pub fn cross_entropy(logits: &mut [f32], vocab: usize, targets: &[u32], w: f32) -> f64 {
    let mut losses = vec![0f64; targets.len()];
    let rows = logits.chunks_exact_mut(vocab).len().min(targets.len());
    let row = |(row, &y): (&mut [f32], &u32)| -> f64 {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
        let lse = max as f64 + sum.ln();
        let loss = w as f64 * (lse - row[y as usize] as f64);
        for x in row.iter_mut() {
            *x = w * ((*x as f64 - lse).exp() as f32);
        }
        row[y as usize] -= w;
        loss
    };
    if rows * vocab < PAR_FLOPS {
        for ((r, y), l) in logits.chunks_exact_mut(vocab).zip(targets).zip(&mut losses) {
            *l = row((r, y));
        }
    } else {
        logits
            .par_chunks_exact_mut(vocab)
            .zip(targets.par_iter())
            .zip(losses.par_iter_mut())
            .for_each(|(ry, l)| *l = row(ry));
    }
    losses.iter().sum()
}

/// `-log sigmoid(d)` computed stably, and its derivative in `d`.
pub fn neg_log_sigmoid(d: f32) -> (f64, f32) {
    let d64 = d as f64;
    let loss = if d64 > 0.0 {
        (-d64).exp().ln_1p()
    } else {
        -d64 + d64.exp().ln_1p()
    };
    (loss, -(1.0 - sigmoid(d)))
}

#[cfg(test)]
mod tests {
    //! Finite-difference checks: each backward against central differences of its forward, on a
    //! random direction, in f32 with a step large enough for f32 rounding (relative error < 1e-2).
    use super::*;
    use crate::rng::Rng;

    fn randn(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * scale as f64) as f32)
            .collect()
    }

    fn dotv(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// Checks `<grad, dir> == (f(x + e dir) - f(x - e dir)) / 2e` for a scalar function `f`.
    fn check(name: &str, x: &[f32], grad: &[f32], f: impl Fn(&[f32]) -> f64) {
        let mut rng = Rng::new(7);
        let dir = randn(&mut rng, x.len(), 1.0);
        let eps = 1e-2f32;
        let shifted = |s: f32| -> Vec<f32> { x.iter().zip(&dir).map(|(a, b)| a + s * b).collect() };
        let fd = (f(&shifted(eps)) - f(&shifted(-eps))) / (2.0 * eps as f64);
        let an = dotv(grad, &dir);
        let err = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-3);
        assert!(
            err < 1e-2,
            "{name}: finite difference {fd} vs analytic {an}"
        );
    }

    #[test]
    fn gemm_transposes_match_naive() {
        let mut rng = Rng::new(1);
        let (m, k, n) = (37, 29, 45);
        let a = randn(&mut rng, m * k, 1.0);
        let b = randn(&mut rng, n * k, 1.0);
        let mut c = vec![1f32; m * n];
        gemm(m, k, n, Mat::rows(&a, k), Mat::t(&b, k), 0.5, &mut c, n);
        for i in 0..m {
            for j in 0..n {
                let r: f64 = 0.5 + dotv(&a[i * k..][..k], &b[j * k..][..k]);
                assert!((c[i * n + j] as f64 - r).abs() < 1e-4);
            }
        }
        // Big enough to take the parallel path, split both ways.
        for (m, n) in [(300, 40), (40, 300)] {
            let k = 64;
            let a = randn(&mut rng, m * k, 1.0);
            let b = randn(&mut rng, k * n, 1.0);
            let mut c = vec![0f32; m * n];
            gemm(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), 0.0, &mut c, n);
            for i in (0..m).step_by(7) {
                for j in (0..n).step_by(5) {
                    let r: f64 = (0..k)
                        .map(|x| a[i * k + x] as f64 * b[x * n + j] as f64)
                        .sum();
                    assert!((c[i * n + j] as f64 - r).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn rms_norm_grad() {
        let mut rng = Rng::new(2);
        let (t, d) = (3, 16);
        let x = randn(&mut rng, t * d, 1.0);
        let g = randn(&mut rng, d, 1.0);
        let w = randn(&mut rng, t * d, 1.0);
        let f = |x: &[f32], g: &[f32]| -> f64 {
            let mut y = vec![0f32; t * d];
            let mut inv = vec![0f32; t];
            rms_norm_fwd(x, g, 1e-6, &mut y, &mut inv);
            dotv(&y, &w)
        };
        let mut y = vec![0f32; t * d];
        let mut inv = vec![0f32; t];
        rms_norm_fwd(&x, &g, 1e-6, &mut y, &mut inv);
        let mut dx = vec![0f32; t * d];
        let mut dg = vec![0f32; d];
        rms_norm_bwd(&x, &g, &inv, &w, &mut dx, Some(&mut dg));
        check("rms_norm dx", &x, &dx, |x| f(x, &g));
        check("rms_norm dg", &g, &dg, |g| f(&x, g));
    }

    #[test]
    fn rope_grad_is_inverse_rotation() {
        let mut rng = Rng::new(3);
        let (nh, hd) = (2, 8);
        let inv_freq = vec![1.0, 0.1, 0.01];
        let pos = [0usize, 5, 17];
        let x = randn(&mut rng, 3 * nh * hd, 1.0);
        let w = randn(&mut rng, x.len(), 1.0);
        let mut dx = w.clone();
        rope_rows(&mut dx, nh, hd, &inv_freq, &pos, true);
        check("rope", &x, &dx, |x| {
            let mut y = x.to_vec();
            rope_rows(&mut y, nh, hd, &inv_freq, &pos, false);
            dotv(&y, &w)
        });
    }

    fn packed_ctx() -> (Vec<RowCtx>, Vec<usize>) {
        // rows 0..3: a prefix; rows 3..5 and 5..7: two branches after it; rows 7..9: a separate
        // packed sequence.
        let mut ctx = Vec::new();
        let mut pos = Vec::new();
        for i in 0..3 {
            ctx.push(RowCtx {
                prefix: (0, 0),
                own: 0,
            });
            pos.push(i);
        }
        for (s, n) in [(3, 2), (5, 2)] {
            for i in 0..n {
                ctx.push(RowCtx {
                    prefix: (0, 3),
                    own: s,
                });
                pos.push(3 + i);
            }
        }
        for i in 0..2 {
            ctx.push(RowCtx {
                prefix: (0, 0),
                own: 7,
            });
            pos.push(i);
        }
        (ctx, pos)
    }

    #[test]
    fn attention_grad_gqa_packed() {
        let mut rng = Rng::new(4);
        let (ctx, pos) = packed_ctx();
        let t = ctx.len();
        let d = AttnDims {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 4,
            window: Some(4),
        };
        let (qd, kvd) = (16, 8);
        let q = randn(&mut rng, t * qd, 1.0);
        let k = randn(&mut rng, t * kvd, 1.0);
        let v = randn(&mut rng, t * kvd, 1.0);
        let w = randn(&mut rng, t * qd, 1.0);
        let fwd = |q: &[f32], k: &[f32], v: &[f32]| -> (Vec<f32>, Vec<f32>) {
            let mut o = vec![0f32; t * qd];
            let mut l = vec![0f32; t * 4];
            attention_fwd(q, k, v, &ctx, &pos, d, &mut o, &mut l);
            (o, l)
        };
        let (o, l) = fwd(&q, &k, &v);
        let (mut dq, mut dk, mut dv) =
            (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        attention_bwd(
            &q, &k, &v, &o, &l, &w, &ctx, &pos, d, &mut dq, &mut dk, &mut dv,
        );
        check("attn dq", &q, &dq, |q| dotv(&fwd(q, &k, &v).0, &w));
        check("attn dk", &k, &dk, |k| dotv(&fwd(&q, k, &v).0, &w));
        check("attn dv", &v, &dv, |v| dotv(&fwd(&q, &k, v).0, &w));
        // Branch rows never see the other branch: changing row 3's k/v leaves rows 5..7 unchanged.
        let mut k2 = k.clone();
        k2[3 * kvd..4 * kvd].iter_mut().for_each(|x| *x += 1.0);
        let o2 = fwd(&q, &k2, &v).0;
        assert_eq!(&o[5 * qd..7 * qd], &o2[5 * qd..7 * qd]);
        assert_ne!(&o[3 * qd..5 * qd], &o2[3 * qd..5 * qd]);
    }

    #[test]
    fn silu_mul_grad() {
        let mut rng = Rng::new(5);
        let (t, inter) = (3, 8);
        let gu = randn(&mut rng, t * 2 * inter, 2.0);
        let w = randn(&mut rng, t * inter, 1.0);
        let mut dgu = vec![0f32; gu.len()];
        silu_mul_bwd(&gu, &w, inter, &mut dgu);
        check("silu_mul", &gu, &dgu, |gu| {
            let mut a = vec![0f32; t * inter];
            silu_mul_fwd(gu, inter, &mut a);
            dotv(&a, &w)
        });
    }

    #[test]
    fn cross_entropy_and_pair_loss_grads() {
        let mut rng = Rng::new(6);
        let v = 11;
        let x = randn(&mut rng, 2 * v, 3.0);
        let tg = [3u32, 10];
        let mut g = x.clone();
        cross_entropy(&mut g, v, &tg, 0.5);
        check("cross_entropy", &x, &g, |x| {
            cross_entropy(&mut x.to_vec(), v, &tg, 0.5)
        });
        for d in [-30.0f32, -1.5, 0.0, 0.7, 40.0] {
            let (_, gd) = neg_log_sigmoid(d);
            check("neg_log_sigmoid", &[d], &[gd], |x| neg_log_sigmoid(x[0]).0);
        }
    }
}
