//! Engine benchmarks: the cost of growing a search tree with the tree engine versus the way the
//! reference implementation does it (every expansion re-prefills its whole path from scratch).

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
    /// Also time the naive way (re-prefill every path).
    pub naive: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TreeBench {
    /// Distinct tokens in the tree: prefix + nodes x step_tokens.
    pub unique_tokens: u64,
    /// Tokens the engine pushed through the decoder.
    pub tokens_computed: u64,
    pub seconds: f64,
    /// Time for the same expansions with every path re-prefilled from scratch (None if skipped).
    pub naive_seconds: Option<f64>,
    pub naive_tokens_computed: Option<u64>,
    pub nodes: usize,
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
    let mut paths: Vec<Vec<u32>> = Vec::new(); // path of every expanded node, for the naive run
    let mut nodes = 0;
    for d in 0..shape.depth {
        let mut reqs = Vec::new();
        for (k, &node) in level.iter().enumerate() {
            paths.push(eng.tokens(node)?.to_vec());
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

    let (naive_seconds, naive_tokens) = if shape.naive {
        let t1 = Instant::now();
        let mut computed = 0;
        for path in &paths {
            // A fresh engine per expansion: nothing cached, the path is prefilled again, then the
            // children are decoded together (as vLLM with n = width and prefix caching off).
            let need = path.len() + shape.width * (shape.step_tokens + cfg.block_size);
            let per_block = lm.model.kv_bytes_per_block(cfg.block_size, cfg.kv_dtype);
            let budget = need.div_ceil(cfg.block_size) * per_block;
            let mut e = Engine::new(
                lm.clone(),
                EngineConfig {
                    kv_budget_bytes: budget.min(cfg.kv_budget_bytes),
                    ..cfg
                },
            )?;
            let node = e.add(path)?;
            e.expand(node, shape.width, &params(shape.step_tokens, 1))?;
            computed += e.stats().tokens_computed;
        }
        (Some(t1.elapsed().as_secs_f64()), Some(computed))
    } else {
        (None, None)
    };
    Ok(TreeBench {
        unique_tokens: (shape.prefix_tokens + nodes * shape.step_tokens) as u64,
        tokens_computed: stats.tokens_computed,
        seconds,
        naive_seconds,
        naive_tokens_computed: naive_tokens,
        nodes,
    })
}
