//! Where each decoder tensor lives in a Hugging Face checkpoint, per architecture.
//!
//! The inference decoder ([`crate::model::decoder`]) and the trainer ([`crate::train`]) both build
//! their blocks from this one mapping, so fused (Phi-3 `qkv_proj`, `gate_up_proj`) or split
//! (`q_proj`/`k_proj`/`v_proj`, `gate_proj`/`up_proj`) projections and the bias rules are decided
//! in one place. Module names are given without the `.weight`/`.bias` suffix, as PEFT names them.

use crate::model::config::{Arch, ModelConfig};

/// Token embedding `[vocab, hidden]`.
pub const EMBED: &str = "model.embed_tokens.weight";
/// Final RMSNorm weight `[hidden]`.
pub const FINAL_NORM: &str = "model.norm.weight";
/// Untied LM head `[vocab, hidden]`.
pub const LM_HEAD: &str = "lm_head.weight";

/// A linear layer stored as one or more row blocks (`<module>.weight` `[rows, in_dim]`), whose
/// outputs are concatenated in order.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearLayout {
    /// `(module name, rows)` in output order.
    pub parts: Vec<(String, usize)>,
    pub in_dim: usize,
    /// Each part also has `<module>.bias` `[rows]`.
    pub bias: bool,
}

impl LinearLayout {
    /// Total output width.
    pub fn out_dim(&self) -> usize {
        self.parts.iter().map(|p| p.1).sum()
    }
}

/// The tensors of decoder block `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerLayout {
    /// `[hidden]`
    pub attn_norm: String,
    /// `[hidden]`
    pub mlp_norm: String,
    /// hidden -> q_dim + 2 * kv_dim
    pub qkv: LinearLayout,
    /// q_dim -> hidden
    pub o: LinearLayout,
    /// hidden -> 2 * intermediate (gate | up)
    pub gate_up: LinearLayout,
    /// intermediate -> hidden
    pub down: LinearLayout,
}

impl LayerLayout {
    /// The layout of block `i` for `c`'s architecture.
    pub fn new(c: &ModelConfig, i: usize) -> LayerLayout {
        let p = format!("model.layers.{i}");
        let (h, q, kv, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let fused = c.arch == Arch::Phi3;
        let qkv_parts = if fused {
            vec![(format!("{p}.self_attn.qkv_proj"), q + 2 * kv)]
        } else {
            vec![
                (format!("{p}.self_attn.q_proj"), q),
                (format!("{p}.self_attn.k_proj"), kv),
                (format!("{p}.self_attn.v_proj"), kv),
            ]
        };
        let gate_up_parts = if fused {
            vec![(format!("{p}.mlp.gate_up_proj"), 2 * inter)]
        } else {
            vec![
                (format!("{p}.mlp.gate_proj"), inter),
                (format!("{p}.mlp.up_proj"), inter),
            ]
        };
        // Qwen2 has biases on q/k/v only; Llama's `attention_bias` also covers o_proj.
        let o_bias = c.attention_bias && c.arch != Arch::Qwen2;
        let lin = |parts, in_dim, bias| LinearLayout {
            parts,
            in_dim,
            bias,
        };
        LayerLayout {
            attn_norm: format!("{p}.input_layernorm.weight"),
            mlp_norm: format!("{p}.post_attention_layernorm.weight"),
            qkv: lin(qkv_parts, h, c.attention_bias),
            o: lin(vec![(format!("{p}.self_attn.o_proj"), h)], q, o_bias),
            gate_up: lin(gate_up_parts, h, c.mlp_bias),
            down: lin(vec![(format!("{p}.mlp.down_proj"), h)], inter, c.mlp_bias),
        }
    }

    /// The four projections in forward order: qkv, o, gate_up, down.
    pub fn linears(&self) -> [&LinearLayout; 4] {
        [&self.qkv, &self.o, &self.gate_up, &self.down]
    }
}
