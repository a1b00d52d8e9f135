//! Single-sequence generation: prefill, then decode token by token through the KV cache, with sampling,
//! stop strings matched on the decoded text across token boundaries, stop/EOS ids and a token budget.

use std::time::Instant;

use crate::engine::sampling::{Sampler, SamplingParams};
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

/// Largest byte index <= i on a char boundary.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Generates a continuation of `prompt`. `on_text` receives text as it becomes final (never text that
/// could still turn out to be part of a stop string); returning `false` cancels with [`Error::Cancelled`].
pub fn generate(
    lm: &LoadedModel,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<GenerateOutput> {
    params.sampling.validate()?;
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("empty prompt".into()));
    }
    if !params.stop.is_empty() && lm.tokenizer.is_none() {
        return Err(Error::InvalidArgument(
            "stop strings need a tokenizer (tokenizer.json) in the model directory".into(),
        ));
    }
    if params.stop.iter().any(String::is_empty) {
        return Err(Error::InvalidArgument("empty stop string".into()));
    }
    let model = &lm.model;
    let max_ctx = model.config.max_position_embeddings;
    if prompt.len() >= max_ctx {
        return Err(Error::InvalidArgument(format!(
            "prompt has {} tokens; the model's context is {max_ctx}",
            prompt.len()
        )));
    }
    let budget = params.max_new_tokens.min(max_ctx - prompt.len());
    let hold = params.stop.iter().map(String::len).max().unwrap_or(1) - 1;

    let mut sampler = Sampler::new(params.sampling);
    let mut stream = lm.tokenizer.as_ref().map(|t| t.stream());
    let mut cache = model.new_cache();
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut emitted = 0usize;
    let mut finish = FinishReason::Length;
    let mut stop_string = None;

    let t0 = Instant::now();
    let mut logits = model.forward(prompt, &mut cache, false)?;
    let prefill = t0.elapsed().as_secs_f64();
    let mut t_first = None;

    while ids.len() < budget {
        let id = sampler.sample(&logits);
        ids.push(id);
        if t_first.is_none() {
            t_first = Some(Instant::now());
        }
        let scan_from = text.len();
        if let Some(s) = stream.as_mut() {
            if let Some(delta) = s.push(id)? {
                text.push_str(&delta);
            }
        }
        // Stop strings: search only where a new match can start.
        if !params.stop.is_empty() && text.len() > scan_from {
            let from = floor_boundary(&text, scan_from.saturating_sub(hold));
            let hit = params
                .stop
                .iter()
                .filter_map(|s| text[from..].find(s.as_str()).map(|p| (from + p, s)))
                .min_by_key(|(p, _)| *p);
            if let Some((pos, s)) = hit {
                text.truncate(pos);
                stop_string = Some(s.clone());
                finish = FinishReason::Stop;
            }
        }
        let done = stop_string.is_some()
            || params.stop_token_ids.contains(&id)
            || (!params.ignore_eos && lm.eos_token_ids.contains(&id));
        if stop_string.is_none() && params.stop_token_ids.contains(&id) {
            finish = FinishReason::Stop;
        } else if stop_string.is_none() && done {
            finish = FinishReason::Eos;
        }
        let safe = if done {
            text.len()
        } else {
            floor_boundary(&text, text.len().saturating_sub(hold))
        };
        if safe > emitted {
            if !on_text(&text[emitted..safe]) {
                return Err(Error::Cancelled);
            }
            emitted = safe;
        }
        if done || ids.len() == budget {
            break;
        }
        logits = model.forward(&[id], &mut cache, false)?;
    }
    if emitted < text.len() && !on_text(&text[emitted..]) {
        return Err(Error::Cancelled);
    }
    let decode_secs = t_first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
    let tokens_per_second = if ids.len() > 1 && decode_secs > 0.0 {
        (ids.len() - 1) as f64 / decode_secs
    } else {
        0.0
    };
    Ok(GenerateOutput {
        ids,
        text,
        finish_reason: finish,
        stop_string,
        prompt_tokens: prompt.len(),
        tokens_per_second,
        prefill_seconds: prefill,
    })
}
