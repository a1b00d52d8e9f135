//! How llama.cpp names and lays out a Hugging Face model's tensors in GGUF, as one table read both
//! ways: [`hf_name`] for the importer ([`crate::model::gguf_import`]) and [`gguf_name`] for the
//! writer ([`crate::model::gguf_write`]), and the q/k row permutation llama files store
//! ([`permute_rows`], applied by the writer and undone by the importer).

use crate::model::config::ModelConfig;

/// Whole-model tensors: (HF name, GGUF name), before the `.weight` / `.bias` suffix.
const MODEL_TENSORS: [(&str, &str); 3] = [
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// Whose head count a tensor's rows are grouped by when the architecture permutes q/k.
#[derive(Clone, Copy)]
enum Heads {
    None,
    Q,
    Kv,
}

/// A per-layer tensor: its HF name after `model.layers.N.`, its GGUF name after `blk.N.`, the
/// heads its rows are permuted by, and the architectures it exists in (`None`: all but the
/// `Some(false)` ones' fused variants; see [`LAYER_TENSORS`]).
struct Part {
    hf: &'static str,
    gguf: &'static str,
    heads: Heads,
    /// `Some(true)`: only phi3 (gate and up fused in `ffn_up`); `Some(false)`: every other
    /// architecture; `None`: all.
    phi3: Option<bool>,
}

const fn part(hf: &'static str, gguf: &'static str, heads: Heads, phi3: Option<bool>) -> Part {
    Part {
        hf,
        gguf,
        heads,
        phi3,
    }
}

const LAYER_TENSORS: [Part; 11] = [
    part("input_layernorm", "attn_norm", Heads::None, None),
    part("post_attention_layernorm", "ffn_norm", Heads::None, None),
    part("self_attn.q_proj", "attn_q", Heads::Q, None),
    part("self_attn.k_proj", "attn_k", Heads::Kv, None),
    part("self_attn.v_proj", "attn_v", Heads::None, None),
    part("self_attn.qkv_proj", "attn_qkv", Heads::None, None),
    part("self_attn.o_proj", "attn_output", Heads::None, None),
    part("mlp.gate_proj", "ffn_gate", Heads::None, None),
    part("mlp.gate_up_proj", "ffn_up", Heads::None, Some(true)),
    part("mlp.up_proj", "ffn_up", Heads::None, Some(false)),
    part("mlp.down_proj", "ffn_down", Heads::None, None),
];

/// Whether a GGUF architecture stores q/k rows permuted for interleaved RoPE (llama; qwen2 and
/// phi3 are not permuted).
pub(crate) fn permutes_qk(arch: &str) -> bool {
    arch == "llama"
}

/// The GGUF name of an HF tensor of a model of GGUF architecture `arch`, and the head count its
/// rows are permuted by (llama's q: heads, k: KV heads); `None` for a tensor llama.cpp has no
/// name for.
pub(crate) fn gguf_name(
    hf: &str,
    arch: &str,
    cfg: &ModelConfig,
) -> Option<(String, Option<usize>)> {
    rename(hf, arch, cfg, true)
}

/// The HF name of a GGUF tensor, and the head count its rows are stored permuted by.
pub(crate) fn hf_name(
    gguf: &str,
    arch: &str,
    cfg: &ModelConfig,
) -> Option<(String, Option<usize>)> {
    rename(gguf, arch, cfg, false)
}

fn rename(
    name: &str,
    arch: &str,
    cfg: &ModelConfig,
    to_gguf: bool,
) -> Option<(String, Option<usize>)> {
    // (from, to) of an (HF, GGUF) pair in this direction.
    let dir = |hf: &'static str, gguf: &'static str| if to_gguf { (hf, gguf) } else { (gguf, hf) };
    let (base, suffix) = name.rsplit_once('.')?;
    if let Some((_, to)) = MODEL_TENSORS
        .iter()
        .map(|&(h, g)| dir(h, g))
        .find(|&(from, _)| from == base)
    {
        return Some((format!("{to}.{suffix}"), None));
    }
    let (from_layers, to_layers) = dir("model.layers.", "blk.");
    let (layer, rest) = base.strip_prefix(from_layers)?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let phi3 = arch == "phi3";
    let p = LAYER_TENSORS
        .iter()
        .find(|p| dir(p.hf, p.gguf).0 == rest && p.phi3.is_none_or(|only| only == phi3))?;
    let heads = match p.heads {
        Heads::None => None,
        Heads::Q => Some(cfg.num_heads),
        Heads::Kv => Some(cfg.num_kv_heads),
    };
    let to = dir(p.hf, p.gguf).1;
    Some((
        format!("{to_layers}{layer}.{to}.{suffix}"),
        heads.filter(|_| permutes_qk(arch)),
    ))
}

/// llama.cpp's q/k permutation for interleaved RoPE (`convert_hf_to_gguf.py` `permute`) on
/// `src`'s rows of `row_len` items: within each head of `hd` rows, GGUF row `2i + j` is HF row
/// `j * hd/2 + i`. `to_gguf` applies it (HF -> GGUF), otherwise it is undone. `None` when the
/// rows do not split into `heads` heads of even size.
pub(crate) fn permute_rows<T: Copy + Default>(
    src: &[T],
    row_len: usize,
    heads: usize,
    to_gguf: bool,
) -> Option<Vec<T>> {
    let rows = src.len() / row_len.max(1);
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return None;
    }
    let hd = rows / heads;
    let mut out = vec![T::default(); src.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let (gguf, hf) = (h * hd + 2 * i + j, h * hd + j * (hd / 2) + i);
                let (from, to) = if to_gguf { (hf, gguf) } else { (gguf, hf) };
                out[to * row_len..(to + 1) * row_len]
                    .copy_from_slice(&src[from * row_len..(from + 1) * row_len]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        let json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 100,
        });
        ModelConfig::from_json(&json, std::path::Path::new("config.json")).unwrap()
    }

    #[test]
    fn names_follow_llama_cpp_both_ways() {
        let c = cfg();
        // llama.cpp's names (gguf-py `TENSOR_NAMES`, `convert_hf_to_gguf.py` mappings).
        let pairs = [
            (
                "model.embed_tokens.weight",
                "token_embd.weight",
                "llama",
                None,
            ),
            ("lm_head.weight", "output.weight", "qwen2", None),
            ("model.norm.weight", "output_norm.weight", "qwen2", None),
            (
                "model.layers.1.self_attn.q_proj.weight",
                "blk.1.attn_q.weight",
                "llama",
                Some(4),
            ),
            (
                "model.layers.1.self_attn.k_proj.weight",
                "blk.1.attn_k.weight",
                "llama",
                Some(2),
            ),
            (
                "model.layers.0.self_attn.k_proj.bias",
                "blk.0.attn_k.bias",
                "qwen2",
                None,
            ),
            (
                "model.layers.0.self_attn.qkv_proj.weight",
                "blk.0.attn_qkv.weight",
                "phi3",
                None,
            ),
            (
                "model.layers.0.mlp.gate_up_proj.weight",
                "blk.0.ffn_up.weight",
                "phi3",
                None,
            ),
            (
                "model.layers.0.mlp.up_proj.weight",
                "blk.0.ffn_up.weight",
                "qwen2",
                None,
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "blk.0.ffn_norm.weight",
                "llama",
                None,
            ),
        ];
        for (hf, gguf, arch, heads) in pairs {
            assert_eq!(
                gguf_name(hf, arch, &c),
                Some((gguf.to_string(), heads)),
                "{hf}"
            );
            assert_eq!(
                hf_name(gguf, arch, &c),
                Some((hf.to_string(), heads)),
                "{gguf}"
            );
        }
        assert_eq!(
            gguf_name("model.layers.x.mlp.up_proj.weight", "llama", &c),
            None
        );
        assert_eq!(hf_name("blk.0.ffn_gate_inp.weight", "llama", &c), None);
        assert_eq!(hf_name("rope_freqs.weight", "llama", &c), None);
    }

    #[test]
    fn permutation_is_llama_cpp_permute_and_its_inverse() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(...)
        // hd = 8: for hd = 4 the permutation is its own inverse and would not tell directions apart.
        let (heads, hd, cols) = (2, 8, 3);
        let hf: Vec<f32> = (0..heads * hd * cols).map(|x| x as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for a in 0..2 {
                for b in 0..hd / 2 {
                    // permuted index (h, b, a) <- original (h, a, b)
                    let from = h * hd + a * (hd / 2) + b;
                    let to = h * hd + b * 2 + a;
                    gguf[to * cols..(to + 1) * cols]
                        .copy_from_slice(&hf[from * cols..(from + 1) * cols]);
                }
            }
        }
        assert_eq!(permute_rows(&hf, cols, heads, true).unwrap(), gguf);
        assert_eq!(permute_rows(&gguf, cols, heads, false).unwrap(), hf);
        assert!(permute_rows(&gguf, cols, 5, false).is_none());
    }
}
