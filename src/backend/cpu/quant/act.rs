//! Activations quantized to 8 bits per block for `fast` precision, as llama.cpp does it.
//!
//! The block length follows the weight format: 32 values for Q4_0..Q8_0 (`q8_0`: `d = amax / 127`,
//! `q = round(x / d)`, ties away from zero) and 256 for the K-quants (`q8_K`: `d = max / -127` with
//! `max` the value of largest magnitude, `q = round_ties_even(x / d)`). Either way every quant lies
//! in `-127..=127` (the AVX2 sign trick negates them) and the sums of each 16 quants are kept
//! (`bsum`), for the formats with mins. This is scalar code: it touches `m * cols` values once per
//! matmul, against `rows * cols` weights.

use super::QuantFormat;
use crate::{Error, Result};

/// `m` rows of `cols` activations in 8-bit blocks of `qk` values.
#[derive(Debug, Clone, Default)]
pub struct ActQ8 {
    qk: usize,
    cols: usize,
    m: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    bsum: Vec<i32>,
}

impl ActQ8 {
    /// Quantizes `m` rows of `cols` values (`x.len() == m * cols`, `cols` whole blocks of
    /// `format`) for matmuls with weights of `format`.
    pub fn quantize(format: QuantFormat, x: &[f32], m: usize, cols: usize) -> ActQ8 {
        let mut a = ActQ8::default();
        a.requantize(format, x, m, cols);
        a
    }

    /// As [`ActQ8::quantize`], reusing this value's buffers.
    pub fn requantize(&mut self, format: QuantFormat, x: &[f32], m: usize, cols: usize) {
        let qk = format.block_values();
        assert!(
            x.len() == m * cols && cols.is_multiple_of(qk),
            "{m}x{cols} activations for {}",
            format.name()
        );
        let nblk = m * cols / qk;
        (self.qk, self.cols, self.m) = (qk, cols, m);
        self.q.resize(m * cols, 0);
        self.d.resize(nblk, 0.0);
        self.bsum.resize(m * cols / 16, 0);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("sse4.1") {
            // SAFETY: the CPU has AVX2 and SSE4.1 (checked just above).
            unsafe { quantize_blocks_avx2(qk, x, &mut self.q, &mut self.d) };
        } else {
            quantize_blocks(qk, x, &mut self.q, &mut self.d);
        }
        #[cfg(not(target_arch = "x86_64"))]
        quantize_blocks(qk, x, &mut self.q, &mut self.d);
        for (s, q) in self.bsum.iter_mut().zip(self.q.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i32).sum();
        }
    }

    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Errors unless these activations were quantized for `format` with `cols` columns.
    pub fn check(&self, format: QuantFormat, cols: usize) -> Result<()> {
        if self.qk != format.block_values() || self.cols != cols {
            return Err(Error::InvalidArgument(format!(
                "activations quantized in {}-value blocks of {} columns, used with {} weights of \
                 {cols} columns",
                self.qk,
                self.cols,
                format.name()
            )));
        }
        Ok(())
    }

    /// Block `b` (row-major over all rows): its quants, scale and 16-value sums.
    #[inline(always)]
    pub(super) fn block(&self, b: usize) -> (&[i8], f32, &[i32]) {
        let s = self.qk / 16;
        (
            &self.q[b * self.qk..(b + 1) * self.qk],
            self.d[b],
            &self.bsum[b * s..(b + 1) * s],
        )
    }

    /// The value block `b`'s quant `l` stands for (`d * q`).
    pub fn value(&self, b: usize, l: usize) -> f32 {
        self.d[b] * self.q[b * self.qk + l] as f32
    }
}

/// Every `qk`-value block of `x` quantized into `q` with its scale in `d`.
#[inline(always)]
fn quantize_blocks(qk: usize, x: &[f32], q: &mut [i8], d: &mut [f32]) {
    for ((xb, qb), d) in x.chunks_exact(qk).zip(q.chunks_exact_mut(qk)).zip(d) {
        *d = if qk == 32 { q8_0(xb, qb) } else { q8_k(xb, qb) };
    }
}

/// [`quantize_blocks`] compiled for AVX2 and SSE4.1: the roundings become instructions instead of
/// calls into libm (`perf` of the `fast` panel GEMM bench on Q4_K: quantizing took 10% of the
/// samples against 32% for the GEMM itself), with the
/// same results (both roundings are exactly specified; nothing is contracted).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,sse4.1")]
unsafe fn quantize_blocks_avx2(qk: usize, x: &[f32], q: &mut [i8], d: &mut [f32]) {
    quantize_blocks(qk, x, q, d)
}

/// llama.cpp's `quantize_row_q8_0_ref` for one block; returns `d`.
#[inline(always)]
fn q8_0(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round().clamp(-127.0, 127.0) as i8;
    }
    d
}

/// llama.cpp's `quantize_row_q8_K_ref` for one block (scale `-127 / max`); returns `d`.
#[inline(always)]
fn q8_k(x: &[f32], q: &mut [i8]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (iscale * v).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    1.0 / iscale
}
