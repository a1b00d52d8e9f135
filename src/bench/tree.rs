//! Engine benchmarks: the cost of growing a search tree with the tree engine versus two baselines
//! without prefix reuse, both re-prefilling every expanded path from scratch: **batched naive**
//! (every expansion of a level prefilled and decoded together in one batch: what batching alone
//! gives, the ratio's denominator) and **one at a time** (each expansion alone with its `width`
//! children, the reference implementation's way). Tree / batched naive isolates prefix reuse;
//! batched naive / one at a time is what batching adds.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::sampling::SamplingParams;
use crate::engine::{Engine, EngineConfig, GenerateParams, LoadedModel, Request, SeqId};
use crate::error::{Error, Result};

/// Shape of the benchmark tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeShape {
    pub prefix_tokens: usize,
    /// Children per expanded node.
    pub width: usize,
    /// Levels below the root.
    pub depth: usize,
    /// Tokens generated per node.
    pub step_tokens: usize,
    /// Also time the two baselines (re-prefill every path: batched per level, one at a time).
    pub naive: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TreeBench {
    /// Distinct tokens in the tree: prefix + nodes x step_tokens.
    pub unique_tokens: u64,
    /// Tokens the engine pushed through the decoder.
    pub tokens_computed: u64,
    pub seconds: f64,
    /// The same expansions, every path re-prefilled, a whole level in one batch (None if skipped).
    pub naive_batched_seconds: Option<f64>,
    pub naive_batched_tokens_computed: Option<u64>,
    /// The same expansions, every path re-prefilled, one expansion at a time (None if skipped).
    pub naive_seconds: Option<f64>,
    pub naive_tokens_computed: Option<u64>,
    pub nodes: usize,
}

impl TreeBench {
    /// Batched naive seconds over tree seconds: what prefix reuse alone gains.
    pub fn speedup(&self) -> Option<f64> {
        self.naive_batched_seconds.map(|n| n / self.seconds)
    }

    /// One-at-a-time naive seconds over tree seconds: prefix reuse and batching together.
    pub fn speedup_vs_one_at_a_time(&self) -> Option<f64> {
        self.naive_seconds.map(|n| n / self.seconds)
    }
}

fn params(step: usize, seed: u64) -> GenerateParams {
    GenerateParams {
        max_new_tokens: step,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed,
        },
        ignore_eos: true,
        ..Default::default()
    }
}

/// Builds the tree level by level (all expansions of a level decoded together) and, if asked,
/// repeats every expansion naively. `on_level(level, nodes_so_far)` reports progress.
pub fn bench_tree(
    lm: &Arc<LoadedModel>,
    shape: TreeShape,
    cfg: EngineConfig,
    on_level: &mut dyn FnMut(usize, usize),
) -> Result<TreeBench> {
    let vocab = lm.model.config.vocab_size as u64;
    if shape.prefix_tokens == 0 || shape.width == 0 || shape.step_tokens == 0 {
        return Err(Error::InvalidArgument(
            "prefix tokens, width and step tokens must be positive".into(),
        ));
    }
    let prefix: Vec<u32> = (0..shape.prefix_tokens as u64)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let mut eng = Engine::new(lm.clone(), cfg)?;
    let t0 = Instant::now();
    let root = eng.add(&prefix)?;
    let mut level: Vec<SeqId> = vec![root];
    // The path of every expanded node, per level, for the baselines.
    let mut levels: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut nodes = 0;
    for d in 0..shape.depth {
        let mut reqs = Vec::new();
        levels.push(Vec::new());
        for (k, &node) in level.iter().enumerate() {
            levels[d].push(eng.tokens(node)?.to_vec());
            for c in 0..shape.width {
                let seq = eng.fork(node)?;
                let seed = (d * 1_000_003 + k * shape.width + c) as u64;
                reqs.push(Request {
                    seq,
                    params: params(shape.step_tokens, seed),
                });
            }
        }
        eng.run(&reqs, &mut |_, _| true)?;
        for &node in &level {
            eng.remove(node)?;
        }
        level = reqs.iter().map(|r| r.seq).collect();
        nodes += level.len();
        on_level(d + 1, nodes);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let stats = eng.stats();
    drop(eng);

    let (batched, one) = if shape.naive {
        (
            Some(naive_batched(lm, shape, cfg, &levels)?),
            Some(naive_one_at_a_time(lm, shape, cfg, &levels)?),
        )
    } else {
        (None, None)
    };
    Ok(TreeBench {
        unique_tokens: (shape.prefix_tokens + nodes * shape.step_tokens) as u64,
        tokens_computed: stats.tokens_computed,
        seconds,
        naive_batched_seconds: batched.map(|b| b.0),
        naive_batched_tokens_computed: batched.map(|b| b.1),
        naive_seconds: one.map(|b| b.0),
        naive_tokens_computed: one.map(|b| b.1),
        nodes,
    })
}

/// An engine with KV room for `paths`, each with `width` children of `step` tokens, and no more
/// than `cfg` allows.
fn fresh_engine(
    lm: &Arc<LoadedModel>,
    cfg: EngineConfig,
    paths: &[Vec<u32>],
    shape: TreeShape,
) -> Result<Engine> {
    let blocks: usize = paths
        .iter()
        .map(|p| {
            let child = shape.step_tokens + cfg.block_size;
            (p.len() + shape.width * child).div_ceil(cfg.block_size)
        })
        .sum();
    let budget = blocks * lm.model.kv_bytes_per_block(cfg.block_size, cfg.kv_dtype);
    Engine::new(
        lm.clone(),
        EngineConfig {
            kv_budget_bytes: budget.min(cfg.kv_budget_bytes),
            ..cfg
        },
    )
}

/// Every level in one batch on a fresh engine: all its paths prefilled together (each from
/// scratch: they are added before anything is cached, so no block is shared), then all their
/// children decoded together. Returns (seconds, tokens computed).
fn naive_batched(
    lm: &Arc<LoadedModel>,
    shape: TreeShape,
    cfg: EngineConfig,
    levels: &[Vec<Vec<u32>>],
) -> Result<(f64, u64)> {
    let t = Instant::now();
    let mut computed = 0;
    for (d, paths) in levels.iter().enumerate() {
        let mut e = fresh_engine(lm, cfg, paths, shape)?;
        let ids = paths
            .iter()
            .map(|p| e.add(p))
            .collect::<Result<Vec<SeqId>>>()?;
        e.compute(&ids)?;
        let mut reqs = Vec::new();
        for (k, &node) in ids.iter().enumerate() {
            for c in 0..shape.width {
                let seed = (d * 1_000_003 + k * shape.width + c) as u64;
                reqs.push(Request {
                    seq: e.fork(node)?,
                    params: params(shape.step_tokens, seed),
                });
            }
        }
        e.run(&reqs, &mut |_, _| true)?;
        computed += e.stats().tokens_computed;
    }
    Ok((t.elapsed().as_secs_f64(), computed))
}

/// Every expansion alone on a fresh engine: nothing cached, the path prefilled again, then its
/// children decoded together (as vLLM with n = width and prefix caching off). Returns (seconds,
/// tokens computed).
fn naive_one_at_a_time(
    lm: &Arc<LoadedModel>,
    shape: TreeShape,
    cfg: EngineConfig,
    levels: &[Vec<Vec<u32>>],
) -> Result<(f64, u64)> {
    let t = Instant::now();
    let mut computed = 0;
    for path in levels.iter().flatten() {
        let mut e = fresh_engine(lm, cfg, std::slice::from_ref(path), shape)?;
        let node = e.add(path)?;
        e.expand(node, shape.width, &params(shape.step_tokens, 1))?;
        computed += e.stats().tokens_computed;
    }
    Ok((t.elapsed().as_secs_f64(), computed))
}
