//! # librstar
//!
//! rStar-Math style search-based math reasoning with small language models:
//! a from-scratch transformer runtime (safetensors/GGUF, SIMD CPU, CUDA),
//! code-augmented chain-of-thought steps checked in a Python sandbox, MCTS with a
//! process preference model, and self-evolution training, behind a stable C ABI.
//!
//! Layers (bottom to top): [`backend`] ops -> [`model`] (config, weights, decoder)
//! -> [`engine`] (generation, sampling, stop strings) -> search/training, which share the data
//! formats and training data of [`data`].
//! Code-augmented steps ([`steps`]), the sandboxed Python
//! executor ([`exec`]) and the answer grader ([`grade`]) sit beside the engine.
//! The CLI (`src/bin/rstar.rs`, `src/cli/`) and the C ABI ([`ffi`]) are thin shells.

pub mod assets;
pub mod backend;
pub mod bench;
pub mod data;
pub mod engine;
pub mod error;
pub mod exec;
pub mod ffi;
pub mod grade;
pub mod model;
pub mod plot;
pub mod rng;
pub mod search;
pub mod steps;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result, Status};
