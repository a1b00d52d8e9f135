//! What is asked of the engine and what it returns: [`GenerateParams`], a [`Request`] over a
//! sequence ([`SeqId`]), and the results ([`GenerateOutput`] with its [`FinishReason`], a
//! [`Candidate`] of an expansion). Shared by [`super::core`] and [`generate`](mod@super::generate) without a
//! cycle between them.

use crate::engine::sampling::SamplingParams;

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

/// Why generation ended. Serialized as `"stop"`, `"length"` or `"eos"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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

/// The result of one generation; its JSON (the CLI's `--json`, the C ABI's result strings) is
/// this type serialized.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

/// A handle to a sequence in an [`Engine`](super::Engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SeqId(pub u64);

/// One generation request over an existing sequence.
#[derive(Debug, Clone)]
pub struct Request {
    pub seq: SeqId,
    pub params: GenerateParams,
}

/// A sampled continuation from [`Engine::expand`](super::Engine::expand): the child sequence (holding parent + continuation)
/// and what was generated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    pub seq: SeqId,
    #[serde(flatten)]
    pub output: GenerateOutput,
}
