//! The on-disk layouts of process reward models, read by one loader shared by scoring
//! (`engine::ppm`) and training (`train`), and the value heads they hold.
//!
//! * rStar-Math's PPM, [`PpmLayout::Split`]: an HF decoder directory plus `value_head.safetensors`
//!   with `v_head.summary.weight` `[1, hidden]` and `v_head.summary.bias` `[1]`.
//! * The same, [`PpmLayout::Combined`] (trl's `AutoModelForCausalLMWithValueHead`): one checkpoint
//!   whose decoder keys are prefixed `pretrained_model.` and which holds `v_head.summary.*` itself.
//! * Qwen2.5-Math-PRM (`Qwen2ForProcessRewardModel`): `score.0` Linear(h, h), ReLU, `score.2`
//!   Linear(h, 2) inside the checkpoint; the value is the softmax probability of class 1.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::cpu;
use crate::backend::Weight;
use crate::error::{Error, Result};
use crate::model::{ModelConfig, WeightStore};

/// Names of rStar's value-head tensors.
pub const V_HEAD_WEIGHT: &str = "v_head.summary.weight";
pub const V_HEAD_BIAS: &str = "v_head.summary.bias";
/// The prefix trl puts before the decoder's keys in the combined layout.
pub const COMBINED_PREFIX: &str = "pretrained_model.";
/// The file holding the value head in the split layout.
pub const VALUE_HEAD_FILE: &str = "value_head.safetensors";

/// How a PPM's decoder and value head are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PpmLayout {
    /// Decoder under its own names, value head in `value_head.safetensors` beside it.
    Split,
    /// One checkpoint: decoder keys prefixed `pretrained_model.`, plus `v_head.summary.*`.
    Combined,
}

/// The head that turns a final hidden state into a score.
#[derive(Debug, Clone)]
pub enum ValueHead {
    /// rStar-Math: `w . h + b`.
    Linear { w: Vec<f32>, b: f32 },
    /// Qwen2.5-Math-PRM: `softmax(W2 relu(W1 h + b1) + b2)[1]`.
    PrmMlp {
        /// `[hidden, hidden]`
        w1: Weight,
        b1: Vec<f32>,
        /// `[2, hidden]`
        w2: Weight,
        b2: Vec<f32>,
    },
}

impl ValueHead {
    /// Score of one final-norm hidden state.
    pub fn apply(&self, h: &[f32]) -> f32 {
        match self {
            ValueHead::Linear { w, b } => cpu::dot_f32(w, h) + b,
            ValueHead::PrmMlp { w1, b1, w2, b2 } => {
                let mut mid = vec![0f32; b1.len()];
                cpu::matmul(h, 1, w1, &mut mid, b1.len(), 0);
                for (m, b) in mid.iter_mut().zip(b1) {
                    *m = (*m + b).max(0.0);
                }
                let mut logits = [0f32; 2];
                cpu::matmul(&mid, 1, w2, &mut logits, 2, 0);
                logits[0] += b2[0];
                logits[1] += b2[1];
                cpu::softmax(&mut logits);
                logits[1]
            }
        }
    }
}

/// A PPM directory as opened: the decoder's config and weights (under their plain names, whatever
/// the layout), its value head if it has one, and the layout it was found in.
#[derive(Debug)]
pub struct PpmDir {
    pub config: ModelConfig,
    pub store: WeightStore,
    pub head: Option<ValueHead>,
    pub layout: PpmLayout,
}

fn linear_head(store: &WeightStore, hidden: usize) -> Result<ValueHead> {
    let w = store.get(V_HEAD_WEIGHT, &[1, hidden])?.to_f32_vec();
    let b = store.get(V_HEAD_BIAS, &[1])?.get_f32(0);
    Ok(ValueHead::Linear { w, b })
}

/// Opens a PPM (or plain decoder) directory in any of the layouts of the module docs. A directory
/// without a value head gives `head: None` (scoring rejects it, training initialises one); a
/// PyTorch-pickled `value_head.bin` is an error that says how to convert it.
pub fn open_ppm_dir(dir: &Path) -> Result<PpmDir> {
    let (config, mut store) = crate::model::decoder::open_model_dir(dir)?;
    let prefixed = store.names().iter().any(|n| n.starts_with(COMBINED_PREFIX));
    store.strip_prefix(COMBINED_PREFIX);
    let h = config.hidden_size;
    let separate = dir.join(VALUE_HEAD_FILE);
    let (head, layout) = if separate.is_file() {
        let head = linear_head(&WeightStore::open_files(&[separate])?, h)?;
        (Some(head), PpmLayout::Split)
    } else if store.contains(V_HEAD_WEIGHT) {
        (Some(linear_head(&store, h)?), PpmLayout::Combined)
    } else if store.contains("score.0.weight") {
        let head = ValueHead::PrmMlp {
            w1: store.get("score.0.weight", &[h, h])?,
            b1: store.get("score.0.bias", &[h])?.to_f32_vec(),
            w2: store.get("score.2.weight", &[2, h])?,
            b2: store.get("score.2.bias", &[2])?.to_f32_vec(),
        };
        (Some(head), PpmLayout::Split)
    } else if dir.join("value_head.bin").is_file() {
        return Err(Error::Unsupported(format!(
            "{}: value_head.bin is a PyTorch pickle; save its tensors as value_head.safetensors \
             (python: safetensors.torch.save_file(torch.load('value_head.bin'), 'value_head.safetensors'))",
            dir.display()
        )));
    } else if prefixed {
        (None, PpmLayout::Combined)
    } else {
        (None, PpmLayout::Split)
    };
    Ok(PpmDir {
        config,
        store,
        head,
        layout,
    })
}
