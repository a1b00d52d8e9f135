//! f32 -> ggml blocks: ports of llama.cpp's reference quantizers (`quantize_row_*_ref` in
//! ggml-quants.c), the ones `llama-quantize` runs when no importance matrix is given.
//!
//! Owns the encoders only; the layouts they fill are the ones [`super::blocks`] decodes. Every
//! float expression is evaluated in f32 in ggml's order (products, sums, `nearest_int`'s
//! magic-number rounding, C's truncating casts, f16 round-to-nearest-even), so the bytes equal
//! llama.cpp's (tests/quantize_ref.rs compares against blocks quantized by libggml itself).
//! Formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.

use half::f16;

use super::QuantFormat;
use crate::{Error, Result};

const QK_K: usize = 256;
/// ggml's GROUP_MAX_EPS: below this a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Whether [`quantize`] can produce `format`.
pub fn can_quantize(format: QuantFormat) -> bool {
    !matches!(format, QuantFormat::Q2K | QuantFormat::Q3K)
}

/// Quantizes `src` (a whole number of `format` blocks) into `out` (exactly that many blocks'
/// bytes), with llama.cpp's reference quantizer for the format.
pub fn quantize(format: QuantFormat, src: &[f32], out: &mut [u8]) -> Result<()> {
    let (qk, bytes) = (format.block_values(), format.block_bytes());
    if !src.len().is_multiple_of(qk) || src.len() / qk * bytes != out.len() {
        return Err(Error::InvalidArgument(format!(
            "{} values cannot be quantized into {} bytes of {}",
            src.len(),
            out.len(),
            format.name()
        )));
    }
    let block: fn(&[f32], &mut [u8]) = match format {
        QuantFormat::Q4_0 => q4_0,
        QuantFormat::Q4_1 => q4_1,
        QuantFormat::Q5_0 => q5_0,
        QuantFormat::Q5_1 => q5_1,
        QuantFormat::Q8_0 => q8_0,
        QuantFormat::Q4K => |x, y| qk4_5(x, y, false),
        QuantFormat::Q5K => |x, y| qk4_5(x, y, true),
        QuantFormat::Q6K => q6_k,
        QuantFormat::Q2K | QuantFormat::Q3K => {
            return Err(Error::Unsupported(format!(
                "quantizing to {} (supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)",
                format.name()
            )))
        }
    };
    for (x, y) in src.chunks_exact(qk).zip(out.chunks_exact_mut(bytes)) {
        block(x, y);
    }
    Ok(())
}

fn put_f16(y: &mut [u8], at: usize, v: f32) {
    y[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// ggml's `nearest_int`: round half to even through the 1.5 * 2^23 trick (valid for |v| < 2^22).
#[inline]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// The value of largest magnitude (the first one on ties), and that magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Q8_0: `d = amax / 127`, `q = round(x / d)`.
fn q8_0(x: &[f32], y: &mut [u8]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for (q, &v) in y[2..34].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

/// The symmetric 4/5-bit formats: `d = max / -half`, `q = min(top, trunc(x / d + half + 0.5))`,
/// nibbles low half first, the fifth bits (when `qh` is given) packed in a u32.
fn symmetric32(x: &[f32], y: &mut [u8], half: f32, top: u8, qh_at: Option<usize>) {
    let (max, _) = signed_absmax(x);
    let d = max / -half;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let offset = half + 0.5; // ggml adds 8.5f / 16.5f in one step
    let quant = |v: f32| top.min((v * id + offset) as i8 as u8);
    pack32(x, y, qh_at, quant);
}

/// The asymmetric 4/5-bit formats: `d = (max - min) / top`, `m = min`, `q = trunc((x - min) / d + 0.5)`.
fn asymmetric32(x: &[f32], y: &mut [u8], top: f32, qh_at: Option<usize>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / top;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    let top = top as u8;
    pack32(x, y, qh_at, |v| top.min(((v - min) * id + 0.5) as i8 as u8));
}

/// Packs 32 quants: `qs[j] = q[j] & 15 | (q[j + 16] & 15) << 4` after the header (and the u32 of
/// fifth bits at `qh_at`, bit `j` for value `j`).
fn pack32(x: &[f32], y: &mut [u8], qh_at: Option<usize>, quant: impl Fn(f32) -> u8) {
    let qs_at = y.len() - 16;
    let mut qh = 0u32;
    for j in 0..16 {
        let (a, b) = (quant(x[j]), quant(x[j + 16]));
        y[qs_at + j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= (((a & 0x10) >> 4) as u32) << j;
        qh |= (((b & 0x10) >> 4) as u32) << (j + 16);
    }
    if let Some(at) = qh_at {
        y[at..at + 4].copy_from_slice(&qh.to_le_bytes());
    }
}

fn q4_0(x: &[f32], y: &mut [u8]) {
    symmetric32(x, y, 8.0, 15, None)
}

fn q5_0(x: &[f32], y: &mut [u8]) {
    symmetric32(x, y, 16.0, 31, Some(2))
}

fn q4_1(x: &[f32], y: &mut [u8]) {
    asymmetric32(x, y, 15.0, None)
}

fn q5_1(x: &[f32], y: &mut [u8]) {
    asymmetric32(x, y, 31.0, Some(4))
}

/// ggml's `make_qkx2_quants`: a scale and a (negated) min for `x` with quants `0..=nmax` in `l`,
/// searching `nstep + 1` candidate scales for the least weighted squared error.
#[allow(clippy::too_many_arguments)] // ggml's signature, kept so the port reads side by side
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (w[0], w[0] * x[0]);
    for i in 1..x.len() {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..x.len() {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let q = q as f32;
            sum_l += w[i] * q;
            sum_l2 += w[i] * q * q;
            sum_xl += w[i] * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..x.len() {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..x.len()].copy_from_slice(&laux[..x.len()]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Q4_K (`five == false`) and Q5_K: eight 32-value sub-blocks, each with a 6-bit scale and min
/// found by `make_qkx2_quants`, then the quants recomputed from the rounded factors.
fn qk4_5(x: &[f32], y: &mut [u8], five: bool) {
    let (nmax, rmin, nstep) = if five { (31, -0.5, 15) } else { (15, -1.0, 20) };
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2 = xs.iter().fold(0f32, |s, &v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(nmax, xs, &w, &mut l[32 * j..32 * j + 32], rmin, 0.1, nstep);
        (scales[j], mins[j]) = (s, m);
        max_scale = if s > max_scale { s } else { max_scale };
        max_min = if m > max_min { m } else { max_min };
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc = &mut y[4..16];
    sc.fill(0);
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls[j];
            sc[j + 4] = lm[j];
        } else {
            sc[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            sc[j - 4] |= (ls[j] >> 4) << 6;
            sc[j] |= (lm[j] >> 4) << 6;
        }
    }
    put_f16(y, 0, max_scale / 63.0);
    put_f16(y, 2, max_min / 63.0);
    let (d_all, dmin_all) = (f16_round(max_scale / 63.0), f16_round(max_min / 63.0));
    for j in 0..8 {
        let d = d_all * ls[j] as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * lm[j] as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    pack_k4_5(&l, y, five);
}

/// Sub-block `2n` in the low nibbles of `qs[32n..32n+32]`, `2n+1` in the high; for Q5_K the fifth
/// bits of sub-block `s` are bit `s` of `qh[l]`.
fn pack_k4_5(l: &[u8; QK_K], y: &mut [u8], five: bool) {
    let qs_at = if five { 48 } else { 16 };
    if five {
        y[16..48].fill(0);
    }
    for n in 0..4 {
        for j in 0..32 {
            let (a, b) = (l[64 * n + j], l[64 * n + 32 + j]);
            y[qs_at + 32 * n + j] = (a & 0xF) | ((b & 0xF) << 4);
            if five {
                y[16 + j] |= ((a >> 4) << (2 * n)) | ((b >> 4) << (2 * n + 1));
            }
        }
    }
}

/// ggml's `make_qx_quants` with `rmse_type == 1` and no importance weights (what Q6_K uses): a
/// signed scale for `x` with quants `-nmax..nmax-1` stored offset by `nmax` in `l`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (q, &v) in l.iter_mut().zip(x) {
        *q = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in l.iter_mut().zip(x) {
                *q = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q6_K: sixteen 16-value sub-blocks with 8-bit signed scales, 6-bit quants.
fn q6_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    y.fill(0);
    if max_abs_scale < GROUP_MAX_EPS {
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(y, 208, 1.0 / iscale);
    let d_all = f16_round(1.0 / iscale);
    for ib in 0..16 {
        y[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    for j in 0..16 {
        let d = d_all * y[192 + j] as i8 as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    for half in 0..2 {
        let (lo, base) = (half * 128, half * 64);
        for i in 0..32 {
            let q = |k: usize| l[lo + i + 32 * k] as u8;
            y[base + i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            y[base + i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            y[128 + half * 32 + i] =
                (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
}
