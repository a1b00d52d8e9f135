//! Model benchmark harness (`rstar bench model`): prefill and batched-decode throughput of a model
//! next to the machine limits measured in the same run (read bandwidth, f32 FMA peak, bf16 dot
//! peak), interleaved with the model runs; every figure is the median of the repeats.

use std::time::Instant;

use serde::Serialize;

use super::machine::{compute_peaks, read_bandwidth};
use crate::backend::cpu::{kernel, precision, Precision};
use crate::error::{Error, Result};
use crate::model::{Model, ModelConfig, SeqChunk};

/// What to run.
#[derive(Debug, Clone)]
pub struct ModelBenchConfig {
    pub prompt_tokens: Vec<usize>,
    pub decode_tokens: usize,
    /// Prompt tokens of each decoding sequence (at least 1; not timed): the context the first
    /// decode step attends to.
    pub context_tokens: usize,
    pub batches: Vec<usize>,
    pub repeats: usize,
}

impl ModelBenchConfig {
    /// Every length, batch size and count is at least 1 (a zero would time nothing and report
    /// 0 tok/s, or reach a matmul with no rows).
    pub fn check(&self) -> Result<()> {
        let bad = |field: &str, v: usize| {
            Err(Error::InvalidArgument(format!(
                "bench: {field} must be at least 1, got {v}"
            )))
        };
        if let Some(&p) = self.prompt_tokens.iter().find(|&&p| p == 0) {
            return bad("prompt tokens", p);
        }
        if let Some(&b) = self.batches.iter().find(|&&b| b == 0) {
            return bad("batch size", b);
        }
        for (field, v) in [
            ("decode tokens", self.decode_tokens),
            ("context tokens", self.context_tokens),
            ("repeats", self.repeats),
        ] {
            if v == 0 {
                return bad(field, v);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefillResult {
    pub tokens: usize,
    pub tok_s: f64,
    /// Model FLOPs per second: the matmuls of every layer, causal attention and the last
    /// position's LM head (see [`prefill_flops`]).
    pub gflop_s: f64,
    /// `gflop_s` over the compute limit of the precision: in `fast`, the AMX bf16 tile peak on
    /// the `amx` path, else the bf16 dot-product peak where the CPU has one; else the f32 FMA peak.
    pub fraction_of_peak: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeResult {
    pub batch: usize,
    pub tok_s: f64,
    /// Weight bytes streamed per second (every step reads the weights once for the whole batch)
    /// over the read bandwidth: the roofline fraction of batch-1 decode.
    pub fraction_of_read_limit: f64,
    /// Tokens per second over batch 1's, when batch 1 was measured.
    pub vs_batch1: Option<f64>,
    /// Model FLOPs per second: every token's matmuls, LM head and attention over its context
    /// (see [`decode_flops`]).
    pub gflop_s: f64,
    /// `gflop_s` over the compute limit of the precision (as for prefill).
    pub fraction_of_peak: f64,
    /// The roofline's tokens per second for this batch: the lower of the read bound (`batch`
    /// tokens per pass over the weights) and the compute bound (the precision's peak over the
    /// FLOPs per token). Its ratio to batch 1's measured rate bounds what `vs_batch1` can reach on
    /// this machine: batch 32 of `exact` on bf16 weights needs 2 FLOPs per weight byte read by
    /// batch 1, so where the f32 peak (GFLOP/s) is under 8 times the read bandwidth (GB/s), 8x
    /// batch 1 is out of reach in `exact`.
    pub roofline_tok_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub read_gb_s: f64,
    pub f32_gflop_s: f64,
    /// `vdpbf16ps`; `None` where the CPU has no bf16 dot-product instruction.
    pub bf16_gflop_s: Option<f64>,
    /// AMX `tdpbf16ps` (16 x 16 x 32 per instruction); `None` off the `amx` path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amx_bf16_gflop_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub prefill: Vec<PrefillResult>,
    pub decode: Vec<DecodeResult>,
    /// Prompt tokens of each decoding sequence before its timed steps.
    pub context_tokens: usize,
    pub limits: Limits,
    pub weight_bytes: u64,
    /// The fraction of the weights the kernel maps with huge pages (see [`crate::backend::cpu::memory`]). The read
    /// limit is measured on the weights' own memory, so this says which pages it was read from
    /// (on the 2-core Xeon VM, 4 KiB pages read about a fifth slower than 2 MiB ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_on_huge_pages: Option<f64>,
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

/// FLOPs of a `p`-token prefill from position 0 as `time_prefill` runs it: 2 per multiply-add of
/// every layer's projections for every token, 4 per head dimension per visible key per head (QK
/// and PV), and the LM head for the last position only.
pub fn prefill_flops(c: &ModelConfig, p: usize) -> f64 {
    flops(c, p, (p * (p + 1) / 2) as f64)
}

/// FLOPs per token of `time_decode`'s `steps` steps after a `context`-token prompt: one token's
/// projections and LM head, and attention over its context (the prompt and the tokens before it,
/// on average).
pub fn decode_flops(c: &ModelConfig, context: usize, steps: usize) -> f64 {
    flops(c, 1, context as f64 + (steps + 1) as f64 / 2.0)
}

/// FLOPs of `tokens` tokens through every layer with `keys` (query, key) pairs in all, and one
/// LM head row.
fn flops(c: &ModelConfig, tokens: usize, keys: f64) -> f64 {
    let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
    let per_layer = h * (qd + 2 * kvd) + qd * h + 3 * h * inter;
    let matmul = 2.0 * (tokens * c.num_layers * per_layer) as f64;
    let attention = 4.0 * keys * (c.num_heads * c.head_dim * c.num_layers) as f64;
    matmul + attention + 2.0 * (c.vocab_size * h) as f64
}

fn token(i: usize, vocab: usize) -> u32 {
    ((i * 7919 + 13) % vocab) as u32
}

const BLOCK: usize = 16;

/// Seconds for a `p`-token prefill of one sequence (hidden states plus the last position's logits),
/// the second of two into the same KV store: as in the engine, whose KV blocks are allocated once
/// and reused, the timed pass writes to memory already mapped (a store's first pass also takes the
/// page faults of its fresh memory).
fn time_prefill(model: &Model, p: usize) -> Result<f64> {
    let nb = p.div_ceil(BLOCK);
    let mut kv = model.new_kv_store(BLOCK, nb, crate::backend::cpu::kv_dtype())?;
    let table: Vec<u32> = (0..nb as u32).collect();
    let tokens: Vec<u32> = (0..p).map(|i| token(i, model.config.vocab_size)).collect();
    let chunk = SeqChunk {
        table: &table,
        start: 0,
        len: p,
    };
    let h = model.config.hidden_size;
    let (mut hidden, mut logits) = (Vec::new(), Vec::new());
    let mut seconds = 0.0;
    for _ in 0..2 {
        let t0 = Instant::now();
        model.forward_batch_into(&tokens, &[chunk], &mut kv, &mut hidden)?;
        model.logits_into(&hidden[(p - 1) * h..], &mut logits)?;
        seconds = t0.elapsed().as_secs_f64();
    }
    Ok(seconds)
}

/// Tokens per second of `b` sequences decoding `steps` tokens each after a `prompt`-token prompt
/// (prompt not timed; every step computes all `b` rows' logits).
fn time_decode(model: &Model, b: usize, steps: usize, prompt: usize) -> Result<f64> {
    let prompt = prompt.max(1);
    let per = (prompt + steps).div_ceil(BLOCK);
    let mut kv = model.new_kv_store(BLOCK, per * b, crate::backend::cpu::kv_dtype())?;
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
    // As in the engine's decode loop, the hidden states and logits go to buffers reused from step
    // to step: a fresh 600 KB logits vector per step took page faults and zeroing (about 1% of a
    // batch-1 step) that the engine does not pay.
    let (mut hidden, mut logits) = (Vec::new(), Vec::new());
    model.forward_batch_into(&ptoks, &chunks, &mut kv, &mut hidden)?;
    let mut toks = Vec::with_capacity(b);
    let mut chunks = chunks;
    let t0 = Instant::now();
    for step in 0..steps {
        toks.clear();
        toks.extend((0..b).map(|s| token(s * 31 + step, v)));
        for c in &mut chunks {
            c.start = prompt + step;
            c.len = 1;
        }
        model.forward_batch_into(&toks, &chunks, &mut kv, &mut hidden)?;
        model.logits_into(&hidden, &mut logits)?;
    }
    Ok((b * steps) as f64 / t0.elapsed().as_secs_f64())
}

/// Runs the benchmark: for each repeat, every prefill length and every decode batch, then a
/// bandwidth and compute measurement, in turn; reports medians.
pub fn bench_model(model: &Model, weight_bytes: u64, cfg: &ModelBenchConfig) -> Result<ModelBench> {
    cfg.check()?;
    let reps = cfg.repeats;
    let mut bw = Vec::new();
    let (mut f32p, mut bf16p, mut amxp) = (Vec::new(), Vec::new(), Vec::new());
    let mut pre = vec![Vec::new(); cfg.prompt_tokens.len()];
    let mut dec = vec![Vec::new(); cfg.batches.len()];
    // 512 MiB of ordinary memory, touched, held through the runs: the read loop's memory when the
    // weights are smaller (below). Holding it also steadies the model figures: on the 2-core Xeon
    // VM, runs without it measured 10-15% slower 512-token prefill and batch-32 decode in the
    // harness (2 rounds alternating; 386-417 against 450-453 tok/s in `exact`), while a prefill
    // timed alone (`rstar generate`) did not change: the physical memory the runs' buffers land in
    // differs, and the VM's memory is not uniform.
    let held = vec![1u64; 64 << 20];
    // Memory is read where the weights live: their own mapping (huge pages or not, as the model
    // streams them; `weights_on_huge_pages` says which), or the held buffer when the weights are
    // smaller than it.
    let weights = model.backings().into_iter().max_by_key(|m| m.len());
    let read_mem: &[u64] = match &weights {
        Some(w) if w.len() >= held.len() * 8 => bytemuck::cast_slice(&w[..w.len() / 8 * 8]),
        _ => &held,
    };
    // Warm-up: page in the weights.
    time_decode(model, 1, 2, BLOCK)?;
    for _ in 0..reps {
        for (i, &p) in cfg.prompt_tokens.iter().enumerate() {
            pre[i].push(p as f64 / time_prefill(model, p)?);
        }
        for (i, &b) in cfg.batches.iter().enumerate() {
            dec[i].push(time_decode(
                model,
                b,
                cfg.decode_tokens,
                cfg.context_tokens,
            )?);
        }
        // The limits after the model runs.
        bw.push(read_bandwidth(read_mem));
        let (f, b, a) = compute_peaks();
        f32p.push(f);
        bf16p.extend(b);
        amxp.extend(a);
    }
    let limits = Limits {
        read_gb_s: median(bw),
        f32_gflop_s: median(f32p),
        bf16_gflop_s: (!bf16p.is_empty()).then(|| median(bf16p)),
        amx_bf16_gflop_s: (!amxp.is_empty()).then(|| median(amxp)),
    };
    Ok(report(model, weight_bytes, cfg, pre, dec, limits))
}

/// The medians of the runs as rates, fractions of the limits and the roofline.
fn report(
    model: &Model,
    weight_bytes: u64,
    cfg: &ModelBenchConfig,
    pre: Vec<Vec<f64>>,
    dec: Vec<Vec<f64>>,
    limits: Limits,
) -> ModelBench {
    let peak = match (precision(), limits.amx_bf16_gflop_s, limits.bf16_gflop_s) {
        (Precision::Fast, Some(a), _) => a,
        (Precision::Fast, None, Some(b)) => b,
        _ => limits.f32_gflop_s,
    };
    let decode: Vec<(usize, f64)> = cfg
        .batches
        .iter()
        .zip(dec)
        .map(|(&b, v)| (b, median(v)))
        .collect();
    let batch1 = decode.iter().find(|d| d.0 == 1).map(|d| d.1);
    let context = cfg.context_tokens.max(1);
    let per_token = decode_flops(&model.config, context, cfg.decode_tokens);
    ModelBench {
        context_tokens: context,
        prefill: cfg
            .prompt_tokens
            .iter()
            .zip(pre)
            .map(|(&tokens, v)| {
                let tok_s = median(v);
                let gflop_s = prefill_flops(&model.config, tokens) * tok_s / tokens as f64 / 1e9;
                PrefillResult {
                    tokens,
                    tok_s,
                    gflop_s,
                    fraction_of_peak: gflop_s / peak,
                }
            })
            .collect(),
        decode: decode
            .into_iter()
            .map(|(batch, tok_s)| {
                let gflop_s = per_token * tok_s / 1e9;
                let read_bound = batch as f64 * limits.read_gb_s * 1e9 / weight_bytes as f64;
                DecodeResult {
                    batch,
                    tok_s,
                    fraction_of_read_limit: tok_s / batch as f64 * weight_bytes as f64
                        / (limits.read_gb_s * 1e9),
                    vs_batch1: batch1.map(|b1| tok_s / b1),
                    gflop_s,
                    fraction_of_peak: gflop_s / peak,
                    roofline_tok_s: read_bound.min(peak * 1e9 / per_token),
                }
            })
            .collect(),
        limits,
        weight_bytes,
        weights_on_huge_pages: model.huge_page_fraction(),
        kernel: kernel().name(),
        precision: match precision() {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        },
        threads: crate::backend::cpu::team::threads(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero length, batch size or count is refused with an error naming it, before any model
    /// run (a zero batch reached a matmul with no rows and panicked; zero decode tokens printed
    /// 0 tok/s).
    #[test]
    fn zero_lengths_batches_and_counts_are_refused_by_name() {
        let ok = ModelBenchConfig {
            prompt_tokens: vec![128, 512],
            decode_tokens: 4,
            context_tokens: 16,
            batches: vec![1, 8],
            repeats: 3,
        };
        assert!(ok.check().is_ok());
        type Spoil = fn(&mut ModelBenchConfig);
        let cases: [(&str, Spoil); 5] = [
            ("prompt tokens", |c| c.prompt_tokens[1] = 0),
            ("batch size", |c| c.batches = vec![1, 0]),
            ("decode tokens", |c| c.decode_tokens = 0),
            ("context tokens", |c| c.context_tokens = 0),
            ("repeats", |c| c.repeats = 0),
        ];
        for (field, spoil) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            let e = c.check().unwrap_err();
            assert!(
                matches!(e, Error::InvalidArgument(_)) && e.to_string().contains(field),
                "{field}: {e}"
            );
        }
    }

    /// Qwen2.5-0.5B has 494,032,768 parameters (its model card); without the tied embedding
    /// (151936 x 896), the 2 x 24 + 1 RMSNorm weights (896 each) and the 24 QKV biases (1152 each),
    /// the projections hold 357,826,560.
    #[test]
    fn prefill_flops_count_the_published_parameters() {
        let cfg = serde_json::json!({
            "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "tie_word_embeddings": true
        });
        let c = ModelConfig::from_json(&cfg, std::path::Path::new("q05")).unwrap();
        let projections = 494_032_768 - 151_936 * 896 - 49 * 896 - 24 * 1152;
        assert_eq!(projections, 357_826_560);
        let lm_head = 2.0 * (151_936 * 896) as f64;
        // One token attends to itself; four tokens to 1 + 2 + 3 + 4 keys.
        let attn = |keys: usize| 4.0 * (keys * 14 * 64 * 24) as f64;
        assert_eq!(
            prefill_flops(&c, 1),
            2.0 * projections as f64 + attn(1) + lm_head
        );
        assert_eq!(
            prefill_flops(&c, 4),
            8.0 * projections as f64 + attn(10) + lm_head
        );
        // 16 decode steps after a 16-token prompt: 17 to 32 keys, 24.5 on average.
        assert_eq!(
            decode_flops(&c, 16, 16),
            2.0 * projections as f64 + attn(49) / 2.0 + lm_head
        );
        // 4 steps after a 1000-token prompt: 1001 to 1004 keys, 1002.5 on average.
        assert_eq!(
            decode_flops(&c, 1000, 4),
            2.0 * projections as f64 + attn(2005) / 2.0 + lm_head
        );
    }
}
