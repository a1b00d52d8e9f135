//! Perplexity of a model on a text, computed the way llama.cpp's `llama-perplexity` computes it
//! (its `perplexity()` in tools/perplexity/perplexity.cpp, without `--ppl-stride`), so the two
//! numbers can be compared:
//! - the whole text is tokenized once with the tokenizer's special tokens (a BOS only where the
//!   tokenizer adds one; text that spells a special token is not parsed as one);
//! - it is cut into `floor(tokens / ctx)` chunks of `ctx` tokens (or the first `chunks` of them),
//!   each run from an empty KV cache, its first token replaced by BOS when the tokenizer adds one;
//! - only the second half of each chunk is scored: the logits at positions `ctx/2 .. ctx-2`
//!   predict the tokens after them (`ctx - ctx/2 - 1` per chunk), as negative log-likelihoods
//!   from a softmax in f32 with the sum of exponentials in f64;
//! - the estimate is `exp(mean nll)`, its uncertainty `ppl * sqrt(var(nll) / (count - 1))`.

use crate::engine::loaded::LoadedModel;
use crate::error::{Error, Result};

/// Rows of the LM head computed at once: bounds the logits buffer at `SCORE_ROWS * vocab` floats
/// whatever the context length.
const SCORE_ROWS: usize = 32;

/// What to compute: the context length and how many chunks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerplexityConfig {
    /// Tokens per chunk (llama.cpp's `--ctx-size`); at least 4.
    pub ctx: usize,
    /// Most chunks to score (llama.cpp's `--chunks`); `None` = every whole chunk of the text.
    pub chunks: Option<usize>,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        PerplexityConfig {
            ctx: 512,
            chunks: None,
        }
    }
}

/// The estimate after `chunk` chunks (1-based) of `of`, as llama.cpp prints `[chunk]ppl`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PerplexityProgress {
    pub chunk: usize,
    pub of: usize,
    pub ppl: f64,
}

/// The final estimate (`Final estimate: PPL = ppl +/- uncertainty`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PerplexityResult {
    pub ppl: f64,
    pub uncertainty: f64,
    /// Tokens of the whole text (with the BOS, if any).
    pub text_tokens: usize,
    pub ctx: usize,
    pub chunks: usize,
    /// Tokens whose log-likelihood entered the estimate.
    pub scored: usize,
    /// Whether each chunk began with the tokenizer's BOS.
    pub bos: bool,
    /// The running estimate after each chunk.
    pub running: Vec<f64>,
    pub seconds: f64,
}

/// Perplexity of `lm` on `text` (see the module docs); `progress` is called after each chunk.
pub fn perplexity(
    lm: &LoadedModel,
    text: &str,
    cfg: &PerplexityConfig,
    progress: &mut dyn FnMut(&PerplexityProgress),
) -> Result<PerplexityResult> {
    let tok = lm.tokenizer()?;
    let tokens = tok.encode(text, true)?;
    perplexity_of_ids(lm, &tokens, tok.added_bos(), cfg, progress)
}

/// [`perplexity`] of an already tokenized text; `bos` is the id each chunk begins with, if any.
pub fn perplexity_of_ids(
    lm: &LoadedModel,
    tokens: &[u32],
    bos: Option<u32>,
    cfg: &PerplexityConfig,
    progress: &mut dyn FnMut(&PerplexityProgress),
) -> Result<PerplexityResult> {
    let t0 = std::time::Instant::now();
    let ctx = cfg.ctx;
    check_config(lm, tokens.len(), cfg)?;
    let n_chunk = (tokens.len() / ctx).min(cfg.chunks.unwrap_or(usize::MAX));
    let first = ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunk);
    for i in 0..n_chunk {
        let mut chunk = tokens[i * ctx..(i + 1) * ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let (s, s2) = score_chunk(lm, &chunk, first)?;
        nll += s;
        nll2 += s2;
        count += ctx - first - 1;
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        progress(&PerplexityProgress {
            chunk: i + 1,
            of: n_chunk,
            ppl,
        });
    }
    let mean = nll / count as f64;
    let var = nll2 / count as f64 - mean * mean;
    let ppl = mean.exp();
    let uncertainty = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(PerplexityResult {
        ppl,
        uncertainty,
        text_tokens: tokens.len(),
        ctx,
        chunks: n_chunk,
        scored: count,
        bos: bos.is_some(),
        running,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Refuses a context the model cannot hold, one too short to score, and a text shorter than two
/// chunks (as llama.cpp does).
fn check_config(lm: &LoadedModel, n_tokens: usize, cfg: &PerplexityConfig) -> Result<()> {
    let max = lm.model.config.max_position_embeddings;
    if cfg.ctx < 4 || cfg.ctx > max {
        return Err(Error::InvalidArgument(format!(
            "--ctx {}: must be between 4 and the model's {max} positions",
            cfg.ctx
        )));
    }
    if cfg.chunks == Some(0) {
        return Err(Error::InvalidArgument(
            "--chunks 0: nothing to score".into(),
        ));
    }
    if n_tokens < 2 * cfg.ctx {
        return Err(Error::InvalidArgument(format!(
            "the text tokenizes to {n_tokens} tokens; a context of {} needs at least {}",
            cfg.ctx,
            2 * cfg.ctx
        )));
    }
    Ok(())
}

/// Runs one chunk from an empty cache and returns the sums of the negative log-likelihoods (and
/// of their squares) of tokens `first+1 ..` given the logits at positions `first .. len-1`.
fn score_chunk(lm: &LoadedModel, chunk: &[u32], first: usize) -> Result<(f64, f64)> {
    let m = &lm.model;
    let mut cache = m.new_cache();
    let hidden = m.forward_hidden(chunk, &mut cache)?;
    let (h, v) = (m.config.hidden_size, m.config.vocab_size);
    let (mut s, mut s2) = (0f64, 0f64);
    let mut logits = Vec::new();
    let last = chunk.len() - 1;
    for start in (first..last).step_by(SCORE_ROWS) {
        let end = (start + SCORE_ROWS).min(last);
        m.logits_into(&hidden[start * h..end * h], &mut logits)?;
        for (row, pos) in logits.chunks_exact(v).zip(start..end) {
            let target = chunk[pos + 1] as usize;
            if target >= v {
                return Err(Error::InvalidArgument(format!(
                    "token id {target} is outside the model's vocabulary of {v}"
                )));
            }
            let x = -log_softmax(row, target);
            s += x;
            s2 += x * x;
        }
    }
    Ok((s, s2))
}

/// `log p(target)` of one row of logits, as llama.cpp computes it: max in f32, exponentials in
/// f32 summed in f64.
fn log_softmax(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    (logits[target] - max) as f64 - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_the_closed_form() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        for t in 0..3 {
            let want = l[t] as f64 - z.ln();
            assert!((log_softmax(&l, t) - want).abs() < 1e-6);
        }
    }
}
