//! The engine: a loaded model with its tokenizer and stop ids ([`loaded`]); the batched,
//! tree-structured [`Engine`] over a paged KV pool with prefix reuse ([`core`], [`blocks`]); what
//! is asked of it and what it returns ([`request`]); sampling ([`sampling`]); generation of one
//! prompt ([`mod@generate`]), stop strings, and llama.cpp's perplexity ([`perplexity`]).

pub mod blocks;
pub mod core;
pub mod generate;
pub mod loaded;
pub mod perplexity;
pub mod ppm;
pub mod request;
pub mod sampling;
mod stop;

pub use self::core::{Engine, EngineConfig, EngineStats};
pub use generate::generate;
pub use loaded::{LoadedModel, QuantLoad};
pub use perplexity::{perplexity, PerplexityConfig, PerplexityProgress, PerplexityResult};
pub use request::{Candidate, FinishReason, GenerateOutput, GenerateParams, Request, SeqId};
pub use sampling::{Sampler, SamplingParams};
