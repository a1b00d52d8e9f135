//! Models: `config.json` parsing ([`config`]), memory-mapped weights ([`weights`]) and the one decoder
//! shared by every supported architecture ([`decoder`]), built from the checkpoint mapping in [`layout`].

pub mod config;
pub mod decoder;
pub mod kv;
pub mod layout;
pub mod weights;

pub use config::{Arch, ModelConfig, RopeScaling};
pub use decoder::{Model, SeqChunk};
pub use kv::{KvCache, KvStore};
pub use weights::{DType, Weight, WeightStore};
