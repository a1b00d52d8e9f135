//! Shapes of real Qwen2 models (dimensions only) for random-weight benchmark models, and their HF
//! `config.json`: one table for `examples/make_bench_model.rs` (a bf16 checkpoint on disk) and
//! `benches/train.rs` (a training model in memory).

/// The dimensions of a tied-embedding Qwen2 model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qwen2Shape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub inter: usize,
    pub vocab: usize,
}

/// The real models whose shapes benchmarks use, by name.
const NAMED: &[(&str, Qwen2Shape)] = &[
    (
        "qwen2.5-0.5b",
        Qwen2Shape {
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            inter: 4864,
            vocab: 151_936,
        },
    ),
    (
        "qwen2.5-math-1.5b",
        Qwen2Shape {
            hidden: 1536,
            layers: 28,
            heads: 12,
            kv_heads: 2,
            inter: 8960,
            vocab: 151_936,
        },
    ),
];

impl Qwen2Shape {
    /// The shape of a real model by name (`qwen2.5-0.5b`, `qwen2.5-math-1.5b`).
    pub fn named(name: &str) -> Option<Qwen2Shape> {
        NAMED.iter().find(|(n, _)| *n == name).map(|&(_, s)| s)
    }

    /// The names [`Qwen2Shape::named`] knows.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMED.iter().map(|(n, _)| *n)
    }

    /// The HF `config.json` of a bf16 checkpoint of this shape (Qwen2.5's settings: RoPE theta
    /// 1e6, RMS norm eps 1e-6, 32k positions, tied embeddings).
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
            "hidden_size": self.hidden, "intermediate_size": self.inter,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "vocab_size": self.vocab,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_sliding_window": false,
            "sliding_window": null, "bos_token_id": 151643, "eos_token_id": 151643,
        })
    }
}
