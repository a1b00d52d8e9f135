//! Models: `config.json` parsing ([`config`]), memory-mapped weights ([`weights`]), GGUF files
//! ([`gguf`] reads them, [`quant`] dequantizes their blocks, [`gguf_import`] maps them onto the HF
//! config and tensor names, [`gguf_write`] writes them for `rstar quantize`, both through the one
//! name table of [`gguf_names`]), process reward model
//! layouts ([`ppm_layout`]), the KV store ([`kv`]) and the one decoder shared by every supported
//! architecture ([`decoder`]), built from the checkpoint mapping in [`layout`].

pub mod config;
pub mod decoder;
pub mod gguf;
pub mod gguf_import;
pub mod gguf_names;
pub mod gguf_write;
pub mod kv;
pub mod layout;
pub mod ppm_layout;
pub mod quant;
pub mod weights;

pub use config::{Arch, ModelConfig, RopeScaling};
pub use decoder::{Model, SeqChunk};
pub use kv::{KvCache, KvStore};
pub use weights::WeightStore;
