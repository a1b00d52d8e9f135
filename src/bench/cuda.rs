//! `rstar bench cuda`: throughput of the CUDA decoder on a random-weight model of a real shape
//! (weights drawn on the device, no download), next to the device limits measured in the same run:
//! copy bandwidth (device-to-device, bytes read plus written) and the bf16 tensor-core rate of a
//! large cuBLAS GEMM.

use std::time::Instant;

use serde_json::{json, Value};

use crate::backend::cuda::ops::{self, SampleParams};
use crate::backend::cuda::{DevKv, Gpu};
use crate::error::{Error, Result};
use crate::model::decoder::cuda::CudaModel;
use crate::model::{ModelConfig, SeqChunk};

/// What to run.
#[derive(Debug, Clone)]
pub struct CudaBenchConfig {
    /// `qwen2.5-math-7b`, `qwen2.5-1.5b` or `qwen2.5-0.5b`.
    pub shape: String,
    pub device: usize,
    /// Prompt length of the prefill measurement.
    pub prefill_tokens: usize,
    /// Prompt length of every sequence before the decode measurement.
    pub context_tokens: usize,
    /// Decode steps timed per batch size.
    pub decode_tokens: usize,
    pub batches: Vec<usize>,
    /// `fast`: one bf16 GEMM per matmul; `exact`: split-bf16 (two GEMM row sets).
    pub precision: crate::backend::cpu::Precision,
}

impl Default for CudaBenchConfig {
    fn default() -> Self {
        CudaBenchConfig {
            shape: "qwen2.5-math-7b".into(),
            device: 0,
            prefill_tokens: 2048,
            context_tokens: 128,
            decode_tokens: 32,
            batches: vec![1, 32],
            precision: crate::backend::cpu::Precision::Fast,
        }
    }
}

/// The config of a named bench shape (bf16, Qwen2 layout).
pub fn shape_config(name: &str) -> Result<ModelConfig> {
    let (h, l, nh, nkv, inter, vocab, tied) = match name {
        "qwen2.5-math-7b" => (3584, 28, 28, 4, 18944, 152064, false),
        "qwen2.5-1.5b" => (1536, 28, 12, 2, 8960, 151936, true),
        "qwen2.5-0.5b" => (896, 24, 14, 2, 4864, 151936, true),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "unknown bench shape `{name}` (qwen2.5-math-7b, qwen2.5-1.5b, qwen2.5-0.5b)"
            )))
        }
    };
    let v = json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": h, "num_hidden_layers": l, "num_attention_heads": nh,
        "num_key_value_heads": nkv, "intermediate_size": inter, "vocab_size": vocab,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": tied, "torch_dtype": "bfloat16"
    });
    ModelConfig::from_json(&v, std::path::Path::new(name))
}

/// Device-to-device copy bandwidth in GB/s (bytes read + written).
pub fn copy_bandwidth(gpu: &Gpu) -> Result<f64> {
    let n = 1usize << 30;
    let src = ops::zeros::<u8>(gpu, n)?;
    let mut dst = ops::zeros::<u8>(gpu, n)?;
    let err = |e| Error::Device(format!("copy: {e:?}"));
    gpu.stream.memcpy_dtod(&src, &mut dst).map_err(err)?;
    let reps = 10;
    let ms = ops::timed_ms(gpu, &mut || {
        for _ in 0..reps {
            gpu.stream.memcpy_dtod(&src, &mut dst).map_err(err)?;
        }
        Ok(())
    })?;
    Ok((2 * n * reps) as f64 / (ms * 1e-3) / 1e9)
}

/// bf16 tensor-core rate of an 8192^3 cuBLAS GEMM (f32 accumulation), in TFLOP/s.
pub fn tensor_core_peak(gpu: &Gpu) -> Result<f64> {
    let s = 8192usize;
    let a = ops::zeros::<u16>(gpu, s * s)?;
    let b = ops::zeros::<u16>(gpu, s * s)?;
    let c = ops::zeros::<f32>(gpu, s * s)?;
    ops::fill_random_bf16(gpu, ops::ptr(gpu, &a, 0), s * s, 1, 1.0)?;
    ops::fill_random_bf16(gpu, ops::ptr(gpu, &b, 0), s * s, 2, 1.0)?;
    let (pa, pb, pc) = (
        ops::ptr(gpu, &a, 0),
        ops::ptr(gpu, &b, 0),
        ops::ptr(gpu, &c, 0),
    );
    let gemm = ops::Gemm {
        a: pa,
        b: pb,
        c: pc,
        m: s,
        n: s,
        k: s,
        ldc: s,
        col0: 0,
    };
    ops::gemm_cublas(gpu, gemm)?;
    let reps = 10;
    let ms = ops::timed_ms(gpu, &mut || {
        for _ in 0..reps {
            ops::gemm_cublas(gpu, gemm)?;
        }
        Ok(())
    })?;
    Ok(2.0 * (s * s * s * reps) as f64 / (ms * 1e-3) / 1e12)
}

/// The GEMV kernel alone on each decode matrix shape of `mcfg`, one row: GB/s of weights read.
fn gemv_rates(
    gpu: &Gpu,
    mcfg: &ModelConfig,
    bw: f64,
    log: &mut impl FnMut(&str),
) -> Result<Vec<Value>> {
    let mut gemv_gb_s = Vec::new();
    let (h, qd, kvd, inter) = (
        mcfg.hidden_size,
        mcfg.q_dim(),
        mcfg.kv_dim(),
        mcfg.intermediate_size,
    );
    for (gn, gk) in [(2 * inter, h), (h, inter), (qd + 2 * kvd, h), (h, qd)] {
        let gw = ops::DevMatrix {
            buf: ops::zeros::<u8>(gpu, gn * gk * 2)?,
            dtype: crate::backend::DType::BF16,
            n: gn,
            k: gk,
        };
        let gx = ops::zeros::<f32>(gpu, gk)?;
        let go = ops::zeros::<f32>(gpu, gn)?;
        let (px, po) = (ops::ptr(gpu, &gx, 0), ops::ptr(gpu, &go, 0));
        ops::gemv(gpu, px, &gw, po, 1, gn, 0)?;
        let reps = 20;
        let ms = ops::timed_ms(gpu, &mut || {
            (0..reps).try_for_each(|_| ops::gemv(gpu, px, &gw, po, 1, gn, 0))
        })?;
        let rate = (gn * gk * 2 * reps) as f64 / (ms * 1e-3) / 1e9;
        log(&format!(
            "gemv bf16 [{gn} x {gk}], 1 row: {rate:.0} GB/s of weights ({:.1}% of copy bandwidth)",
            100.0 * rate / bw
        ));
        gemv_gb_s.push(json!({"n": gn, "k": gk, "gb_s": rate}));
    }
    Ok(gemv_gb_s)
}

/// The decode runs of [`bench_cuda`]: what every batch shares.
struct DecodeRun<'a> {
    model: &'a CudaModel,
    block_size: usize,
    /// Tokens per sequence (context, decode steps and one untimed step).
    per_seq: usize,
    greedy: SampleParams,
    /// Batch-1 tokens per second at the copy bandwidth.
    roofline: f64,
}

impl DecodeRun<'_> {
    /// Every batch size of `cfg` (with CUDA graphs), and batch 1 again without them.
    fn all(
        &self,
        cfg: &CudaBenchConfig,
        kv: &mut DevKv,
        prompt: &dyn Fn(usize, u32) -> Vec<u32>,
        log: &mut impl FnMut(&str),
    ) -> Result<Vec<Value>> {
        // Decode: `b` sequences with a context_tokens prompt each, then decode_tokens greedy steps.
        let mut decode = Vec::new();
        let mut runs: Vec<(usize, bool)> = cfg.batches.iter().map(|&b| (b, true)).collect();
        // Batch 1 again without CUDA graphs: the launch overhead graphs remove.
        if cfg.batches.contains(&1) {
            runs.push((1, false));
        }
        for (b, graphs) in runs {
            decode.push(self.batch(cfg, kv, prompt, b, graphs, log)?);
        }
        Ok(decode)
    }

    /// `b` sequences with a `context_tokens` prompt each, then `decode_tokens` greedy steps.
    fn batch(
        &self,
        cfg: &CudaBenchConfig,
        kv: &mut DevKv,
        prompt: &dyn Fn(usize, u32) -> Vec<u32>,
        b: usize,
        graphs: bool,
        log: &mut impl FnMut(&str),
    ) -> Result<Value> {
        let (model, bs, per_seq, greedy) = (self.model, self.block_size, self.per_seq, self.greedy);
        model.set_graphs(graphs);
        let blocks_per = per_seq.div_ceil(bs) as u32;
        let tables: Vec<Vec<u32>> = (0..b as u32)
            .map(|s| (s * blocks_per..(s + 1) * blocks_per).collect())
            .collect();
        let ctx = cfg.context_tokens;
        let mut all = Vec::new();
        let chunks: Vec<SeqChunk> = tables
            .iter()
            .enumerate()
            .map(|(s, tb)| {
                all.extend(prompt(ctx, s as u32 + 7));
                SeqChunk {
                    table: tb,
                    start: 0,
                    len: ctx,
                }
            })
            .collect();
        let params = vec![greedy; b];
        let mut next = model.forward_sample(&all, &chunks, bs, kv, &params)?;
        // One untimed step (GEMM choice for this batch size), then the timed steps.
        let mut step = |pos: usize, next: &mut Vec<u32>| -> Result<()> {
            let chunks: Vec<SeqChunk> = tables
                .iter()
                .map(|tb| SeqChunk {
                    table: tb,
                    start: pos,
                    len: 1,
                })
                .collect();
            *next = model.forward_sample(next, &chunks, bs, kv, &params)?;
            Ok(())
        };
        step(ctx, &mut next)?;
        let t = Instant::now();
        for i in 0..cfg.decode_tokens {
            step(ctx + 1 + i, &mut next)?;
        }
        let secs = t.elapsed().as_secs_f64();
        let tok_s = (b * cfg.decode_tokens) as f64 / secs;
        let roofline = self.roofline;
        log(&format!(
            "decode batch {b}{}: {tok_s:.1} tok/s ({:.2} ms/step); batch-1 roofline {roofline:.1} tok/s",
            if graphs { "" } else { " (no CUDA graphs)" },
            1e3 * secs / cfg.decode_tokens as f64
        ));
        Ok(json!({
            "batch": b, "cuda_graphs": graphs, "tok_s": tok_s, "ms_per_step": 1e3 * secs / cfg.decode_tokens as f64,
            "fraction_of_hbm_roofline": tok_s / b as f64 / roofline,
        }))
    }
}

/// Runs the benchmark and returns one JSON object.
pub fn bench_cuda(cfg: &CudaBenchConfig, mut log: impl FnMut(&str)) -> Result<Value> {
    crate::backend::cpu::set_precision(cfg.precision);
    let gpu = Gpu::open(cfg.device)?;
    let name = gpu
        .ctx
        .name()
        .map_err(|e| Error::Device(format!("device name: {e:?}")))?;
    log(&format!(
        "device: {name} ({}, {} SMs)",
        gpu.arch, gpu.sm_count
    ));
    let bw = copy_bandwidth(&gpu)?;
    log(&format!("copy bandwidth: {bw:.0} GB/s (read + write)"));
    let peak = tensor_core_peak(&gpu)?;
    log(&format!(
        "bf16 tensor-core peak (cuBLAS 8192^3): {peak:.0} TFLOP/s"
    ));
    let mcfg = shape_config(&cfg.shape)?;
    let t0 = Instant::now();
    let model = CudaModel::random(mcfg.clone(), gpu.clone(), 42)?;
    gpu.sync()?;
    let wbytes = model.weight_bytes();
    log(&format!(
        "model {}: {:.2} GB of bf16 weights drawn on the device in {:.1} s",
        cfg.shape,
        wbytes as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    ));
    let gemv_gb_s = gemv_rates(&gpu, &mcfg, bw, &mut log)?;
    let (h, qd) = (mcfg.hidden_size, mcfg.q_dim());
    let bs = 16usize;
    let greedy = SampleParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        pad: 0,
        seed: 0,
        counter: 0,
    };
    let max_batch = cfg.batches.iter().copied().max().unwrap_or(1);
    let per_seq = cfg.context_tokens + cfg.decode_tokens + 1;
    let tokens_needed = cfg.prefill_tokens.max(max_batch * per_seq);
    let blocks = tokens_needed.div_ceil(bs) + max_batch;
    let mut kv = DevKv::new(gpu.clone(), mcfg.num_layers, blocks * bs * mcfg.kv_dim())?;
    let vocab = mcfg.vocab_size as u32;
    let prompt = |n: usize, salt: u32| -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761) ^ salt) % vocab)
            .collect()
    };

    // Prefill: one sequence of prefill_tokens in one pass (the second run is timed: the first
    // compiles kernels and measures the GEMM choice per shape).
    let p = cfg.prefill_tokens;
    let table: Vec<u32> = (0..p.div_ceil(bs) as u32).collect();
    let toks = prompt(p, 1);
    let chunk = [SeqChunk {
        table: &table,
        start: 0,
        len: p,
    }];
    model.forward_sample(&toks, &chunk, bs, &mut kv, &[greedy])?;
    let t = Instant::now();
    model.forward_sample(&toks, &chunk, bs, &mut kv, &[greedy])?;
    let prefill_s = t.elapsed().as_secs_f64();
    let l = mcfg.num_layers;
    let body_params = (wbytes / 2 - mcfg.vocab_size * h) as f64;
    let matmul_flops = 2.0 * body_params * p as f64 + 2.0 * (mcfg.vocab_size * h) as f64;
    let attn_flops = 4.0 * (p * (p + 1) / 2) as f64 * qd as f64 * l as f64;
    let prefill_tok_s = p as f64 / prefill_s;
    let prefill_tflops = (matmul_flops + attn_flops) / prefill_s / 1e12;
    log(&format!(
        "prefill {p}: {prefill_tok_s:.0} tok/s, {prefill_tflops:.0} TFLOP/s = {:.1}% of peak",
        100.0 * prefill_tflops / peak
    ));

    let run = DecodeRun {
        model: &model,
        block_size: bs,
        per_seq,
        greedy,
        roofline: bw * 1e9 / wbytes as f64,
    };
    let decode = run.all(cfg, &mut kv, &prompt, &mut log)?;
    let gemm: Vec<Value> = model
        .gemm_choices()
        .into_iter()
        .map(|((m, n, k), imp)| json!({"m_bucket": m, "n": n, "k": k, "impl": format!("{imp:?}")}))
        .collect();
    Ok(json!({
        "device": name, "arch": gpu.arch, "shape": cfg.shape, "weight_bytes": wbytes,
        "limits": {"copy_gb_s": bw, "bf16_tflop_s": peak},
        "precision": format!("{:?}", cfg.precision).to_lowercase(),
        "gemv_gb_s": gemv_gb_s,
        "prefill": {"tokens": p, "tok_s": prefill_tok_s, "tflop_s": prefill_tflops,
                    "fraction_of_tc_peak": prefill_tflops / peak},
        "decode": decode,
        "gemm_choice": gemm,
    }))
}
