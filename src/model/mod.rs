//! Models: `config.json` parsing ([`config`]), memory-mapped weights ([`weights`]), GGUF files
//! ([`gguf`] reads them, [`quant`] dequantizes their blocks, [`gguf_import`] maps them onto the HF
//! config and tensor names) and the one decoder shared by every supported architecture ([`decoder`]).

pub mod config;
pub mod decoder;
pub mod gguf;
pub mod gguf_import;
pub mod quant;
pub mod weights;

pub use config::{Arch, ModelConfig, RopeScaling};
pub use decoder::{KvCache, Model};
pub use weights::{DType, Weight, WeightStore};
