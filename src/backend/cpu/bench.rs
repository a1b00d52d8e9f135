//! Model benchmark harness (`rstar bench model`): prefill and batched-decode throughput of a model
//! next to the machine limits measured in the same run (read bandwidth, f32 FMA peak, bf16 dot
//! peak), interleaved with the model runs; every figure is the median of the repeats.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::simd::{kernel, precision, Kernel};
use crate::error::Result;
use crate::model::{Model, SeqChunk};

/// What to run.
#[derive(Debug, Clone)]
pub struct ModelBenchConfig {
    pub prompt_tokens: Vec<usize>,
    pub decode_tokens: usize,
    pub batches: Vec<usize>,
    pub repeats: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefillResult {
    pub tokens: usize,
    pub tok_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeResult {
    pub batch: usize,
    pub tok_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub read_gb_s: f64,
    pub f32_gflop_s: f64,
    /// `None` where the CPU has no bf16 dot-product instruction.
    pub bf16_gflop_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub prefill: Vec<PrefillResult>,
    pub decode: Vec<DecodeResult>,
    pub limits: Limits,
    pub weight_bytes: u64,
    pub kernel: &'static str,
    pub precision: &'static str,
    pub threads: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn token(i: usize, vocab: usize) -> u32 {
    ((i * 7919 + 13) % vocab) as u32
}

const BLOCK: usize = 16;

/// Seconds for a `p`-token prefill of one sequence (hidden states plus the last position's logits).
fn time_prefill(model: &Model, p: usize) -> Result<f64> {
    let nb = p.div_ceil(BLOCK);
    let mut kv = model.new_kv_store(BLOCK, nb)?;
    let table: Vec<u32> = (0..nb as u32).collect();
    let tokens: Vec<u32> = (0..p).map(|i| token(i, model.config.vocab_size)).collect();
    let t0 = Instant::now();
    let chunk = SeqChunk {
        table: &table,
        start: 0,
        len: p,
    };
    let hidden = model.forward_batch(&tokens, &[chunk], &mut kv)?;
    let h = model.config.hidden_size;
    model.logits(&hidden[(p - 1) * h..])?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Tokens per second of `b` sequences decoding `steps` tokens each after a 16-token prompt
/// (prompt not timed; every step computes all `b` rows' logits).
fn time_decode(model: &Model, b: usize, steps: usize) -> Result<f64> {
    let prompt = BLOCK;
    let per = (prompt + steps).div_ceil(BLOCK);
    let mut kv = model.new_kv_store(BLOCK, per * b)?;
    let tables: Vec<Vec<u32>> = (0..b)
        .map(|s| ((s * per) as u32..((s + 1) * per) as u32).collect())
        .collect();
    let v = model.config.vocab_size;
    let ptoks: Vec<u32> = (0..prompt * b).map(|i| token(i, v)).collect();
    let chunks: Vec<SeqChunk> = tables
        .iter()
        .map(|t| SeqChunk {
            table: t,
            start: 0,
            len: prompt,
        })
        .collect();
    model.forward_batch(&ptoks, &chunks, &mut kv)?;
    let t0 = Instant::now();
    for step in 0..steps {
        let toks: Vec<u32> = (0..b).map(|s| token(s * 31 + step, v)).collect();
        let chunks: Vec<SeqChunk> = tables
            .iter()
            .map(|t| SeqChunk {
                table: t,
                start: prompt + step,
                len: 1,
            })
            .collect();
        let hidden = model.forward_batch(&toks, &chunks, &mut kv)?;
        model.logits(&hidden)?;
    }
    Ok((b * steps) as f64 / t0.elapsed().as_secs_f64())
}

/// GB/s of all threads summing disjoint parts of `buf` (larger than the last-level cache).
fn read_bandwidth(buf: &[u64]) -> f64 {
    let t0 = Instant::now();
    let x = buf
        .par_chunks(1 << 16)
        .map(|c| c.iter().fold(0u64, |a, &b| a ^ b))
        .reduce(|| 0, |a, b| a ^ b);
    std::hint::black_box(x);
    (buf.len() * 8) as f64 / t0.elapsed().as_secs_f64() / 1e9
}

/// Register-resident multiply-add loops on every pool thread at once: (f32 GFLOP/s, bf16 GFLOP/s).
fn compute_peaks() -> (f64, Option<f64>) {
    let run = |f: fn(usize) -> f64| -> f64 {
        let iters = 4_000_000;
        let t0 = Instant::now();
        let flops: f64 = rayon::broadcast(|_| f(iters)).iter().sum();
        flops / t0.elapsed().as_secs_f64() / 1e9
    };
    let k = kernel();
    #[cfg(target_arch = "x86_64")]
    {
        let f32_peak = match k {
            Kernel::Avx512 | Kernel::Avx512Bf16 => run(peak::fma512),
            Kernel::Avx2 => run(peak::fma256),
            _ => run(peak::fma_scalar),
        };
        let bf16 = (k == Kernel::Avx512Bf16).then(|| run(peak::dpbf16));
        (f32_peak, bf16)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = k;
        (run(peak::fma_scalar), None)
    }
}

mod peak {
    //! Peak-rate loops: 12 independent accumulators (enough to cover FMA latency x throughput).

    /// Scalar f32 multiply-adds (the compiler may vectorize; a lower bound).
    pub fn fma_scalar(iters: usize) -> f64 {
        let mut a = [1.0f32; 12];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = v.mul_add(0.999_999, 1e-7);
            }
        }
        std::hint::black_box(a);
        (iters * 12 * 2) as f64
    }

    #[cfg(target_arch = "x86_64")]
    macro_rules! peak_loop {
        ($name:ident, $inner:ident, $feat:literal, $v:ty, $set1:ident, $op:expr, $flops:expr) => {
            pub fn $name(iters: usize) -> f64 {
                use std::arch::x86_64::*;
                #[target_feature(enable = $feat)]
                unsafe fn $inner(iters: usize) {
                    let b = $set1(0.999_999);
                    let mut acc = [$set1(1.0); 12];
                    for _ in 0..iters {
                        for a in acc.iter_mut() {
                            *a = $op(*a, b);
                        }
                    }
                    std::hint::black_box(acc);
                }
                // SAFETY: only called when `kernel()` selected a path whose features are present.
                unsafe { $inner(iters) };
                (iters * 12) as f64 * $flops
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    peak_loop!(
        fma256,
        inner256,
        "avx2,fma",
        __m256,
        _mm256_set1_ps,
        |a, b| _mm256_fmadd_ps(a, b, b),
        16.0
    );
    #[cfg(target_arch = "x86_64")]
    peak_loop!(
        fma512,
        inner512,
        "avx512f",
        __m512,
        _mm512_set1_ps,
        |a, b| _mm512_fmadd_ps(a, b, b),
        32.0
    );
    #[cfg(target_arch = "x86_64")]
    peak_loop!(
        dpbf16,
        innerbf16,
        "avx512f,avx512bf16",
        __m512,
        _mm512_set1_ps,
        |a, b: __m512| _mm512_dpbf16_ps(
            a,
            std::mem::transmute::<__m512, __m512bh>(b),
            std::mem::transmute::<__m512, __m512bh>(b)
        ),
        64.0
    );
}

/// Runs the benchmark: for each repeat, a bandwidth and compute measurement, every prefill length
/// and every decode batch, in turn; reports medians.
pub fn bench_model(model: &Model, weight_bytes: u64, cfg: &ModelBenchConfig) -> Result<ModelBench> {
    let buf = vec![1u64; 64 << 20]; // 512 MiB
    let reps = cfg.repeats.max(1);
    let mut bw = Vec::new();
    let (mut f32p, mut bf16p) = (Vec::new(), Vec::new());
    let mut pre = vec![Vec::new(); cfg.prompt_tokens.len()];
    let mut dec = vec![Vec::new(); cfg.batches.len()];
    // Warm-up: page in the weights.
    time_decode(model, 1, 2)?;
    for _ in 0..reps {
        bw.push(read_bandwidth(&buf));
        let (f, b) = compute_peaks();
        f32p.push(f);
        if let Some(b) = b {
            bf16p.push(b);
        }
        for (i, &p) in cfg.prompt_tokens.iter().enumerate() {
            pre[i].push(p as f64 / time_prefill(model, p)?);
        }
        for (i, &b) in cfg.batches.iter().enumerate() {
            dec[i].push(time_decode(model, b, cfg.decode_tokens)?);
        }
    }
    Ok(ModelBench {
        prefill: cfg
            .prompt_tokens
            .iter()
            .zip(pre)
            .map(|(&tokens, v)| PrefillResult {
                tokens,
                tok_s: median(v),
            })
            .collect(),
        decode: cfg
            .batches
            .iter()
            .zip(dec)
            .map(|(&batch, v)| DecodeResult {
                batch,
                tok_s: median(v),
            })
            .collect(),
        limits: Limits {
            read_gb_s: median(bw),
            f32_gflop_s: median(f32p),
            bf16_gflop_s: (!bf16p.is_empty()).then(|| median(bf16p)),
        },
        weight_bytes,
        kernel: kernel().name(),
        precision: match precision() {
            super::Precision::Exact => "exact",
            super::Precision::Fast => "fast",
        },
        threads: rayon::current_num_threads(),
    })
}
