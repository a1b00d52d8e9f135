//! Generation parameters and results, and [`generate`] for a single prompt (a one-request run of the
//! batched [`Engine`], so single and batched generation are one mechanism).

use std::sync::Arc;

use crate::engine::batch::{Engine, EngineConfig, Request};
use crate::engine::sampling::SamplingParams;
use crate::engine::LoadedModel;
use crate::error::{Error, Result};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Generation ends (reason `stop`) after one of these ids; the id is kept in `ids`.
    pub stop_token_ids: Vec<u32>,
    /// Do not end at the model's EOS ids.
    pub ignore_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_new_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop string or stop id was produced.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
    /// The model produced an EOS id.
    Eos,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
        }
    }
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    /// Generated ids (including the EOS/stop id or the tokens that completed a stop string).
    pub ids: Vec<u32>,
    /// Decoded text, cut before a matched stop string (empty without a tokenizer).
    pub text: String,
    pub finish_reason: FinishReason,
    /// The stop string that ended generation, if any.
    pub stop_string: Option<String>,
    pub prompt_tokens: usize,
    /// Decode speed: generated tokens after the first, per second of decode time.
    pub tokens_per_second: f64,
    /// Prefill time in seconds.
    pub prefill_seconds: f64,
}

/// Generates a continuation of `prompt` (one request on a private [`Engine`] sized for it).
/// `on_text` receives text as it becomes final (never text that could still turn out to be part of a
/// stop string); returning `false` cancels with [`Error::Cancelled`].
pub fn generate(
    lm: &Arc<LoadedModel>,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<GenerateOutput> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("empty prompt".into()));
    }
    let cfg = EngineConfig::default();
    let tokens = (prompt.len() + params.max_new_tokens)
        .min(lm.model.config.max_position_embeddings + 1)
        + cfg.block_size;
    let probe = lm.model.kv_bytes_per_block(cfg.block_size);
    let mut engine = Engine::new(
        lm.clone(),
        EngineConfig {
            kv_budget_bytes: tokens.div_ceil(cfg.block_size) * probe,
            ..cfg
        },
    )?;
    let seq = engine.add(prompt)?;
    let mut out = engine.run(
        &[Request {
            seq,
            params: params.clone(),
        }],
        &mut |_, s| on_text(s),
    )?;
    Ok(out.remove(0))
}
