//! `config.json` parsing into one [`ModelConfig`] for every supported architecture.
//!
//! Both layouts seen in the wild are accepted:
//! * older (transformers 4.x): top-level `rope_theta`, `rope_scaling` (with `type` or `rope_type`), `torch_dtype`;
//! * transformers 5: `rope_parameters` (holding `rope_theta`, `rope_type`, scaling fields,
//!   `partial_rotary_factor`) and `dtype`.
//!
//! Every missing or ill-typed field is reported with the file and the field name.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The decoder families librstar implements. They share one decoder; this selects the weight mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Qwen2 / Qwen2.5: q/k/v biases, tied or untied embeddings.
    Qwen2,
    /// Llama 2/3: GQA, optional `llama3` RoPE scaling.
    Llama,
    /// Mistral: explicit `head_dim`, sliding window.
    Mistral,
    /// Phi-3: fused `qkv_proj` and `gate_up_proj`.
    Phi3,
}

impl Arch {
    /// Maps `model_type` (or an `architectures` entry) to an architecture.
    pub fn from_model_type(s: &str) -> Option<Arch> {
        match s {
            "qwen2" | "Qwen2ForCausalLM" => Some(Arch::Qwen2),
            "llama" | "LlamaForCausalLM" => Some(Arch::Llama),
            "mistral" | "MistralForCausalLM" => Some(Arch::Mistral),
            "phi3" | "Phi3ForCausalLM" => Some(Arch::Phi3),
            _ => None,
        }
    }

    /// The `model_type` string HF uses.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Qwen2 => "qwen2",
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Phi3 => "phi3",
        }
    }
}

/// How rotary frequencies are adjusted for long context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's piecewise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Everything the decoder needs to know about a checkpoint.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    /// Per-head dimension; `hidden_size / num_heads` unless the config says otherwise (Mistral).
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Fraction of `head_dim` that is rotated (Phi-3 family may use < 1).
    pub partial_rotary_factor: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (always for Qwen2; `attention_bias` for Llama).
    pub attention_bias: bool,
    /// gate/up/down projections carry biases (`mlp_bias`).
    pub mlp_bias: bool,
    /// Attention looks back at most this many positions (Mistral), if set.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The dtype the checkpoint declares (`dtype` or `torch_dtype`), informational.
    pub declared_dtype: Option<String>,
}

struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &str, msg: impl Into<String>) -> Error {
        Error::config(self.path, field, msg)
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn usize_req(&self, field: &str) -> Result<usize> {
        match self.get(field) {
            None => Err(self.err(field, "missing")),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| self.err(field, format!("expected a positive integer, got {v}"))),
        }
    }

    fn usize_opt(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(_) => self.usize_req(field).map(Some),
        }
    }

    fn f64_opt(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a number, got {v}"))),
        }
    }

    fn bool_opt(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected true/false, got {v}"))),
        }
    }

    fn str_opt(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a string, got {v}"))),
        }
    }

    /// Token id fields may be an integer or a list of integers.
    fn ids(&self, field: &str) -> Result<Vec<u32>> {
        let bad = || self.err(field, "expected a token id or a list of token ids");
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(bad)
                })
                .collect(),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| vec![n])
                .ok_or_else(bad),
        }
    }
}

impl ModelConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
        Self::from_json(&value, path)
    }

    /// Parses a config already read as JSON; `path` is used in error messages.
    pub fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let map = value
            .as_object()
            .ok_or_else(|| Error::format(path, "config is not a JSON object"))?;
        let f = Fields { path, map };
        let arch = detect_arch(&f)?;
        let hidden_size = f.usize_req("hidden_size")?;
        let (num_heads, num_kv_heads, head_dim) = parse_heads(&f, hidden_size)?;
        let (rope_theta, rope_scaling, partial_rotary_factor) = parse_rope(&f)?;

        let act = f.str_opt("hidden_act")?.unwrap_or("silu");
        if act != "silu" && act != "swish" {
            return Err(Error::Unsupported(format!(
                "{}: hidden_act `{act}` (only silu is implemented)",
                path.display()
            )));
        }
        let use_sliding = f
            .bool_opt("use_sliding_window")?
            .unwrap_or(arch != Arch::Qwen2);
        let sliding_window = if use_sliding {
            f.usize_opt("sliding_window")?
        } else {
            None
        };
        let attention_bias = match arch {
            Arch::Qwen2 => true,
            _ => f.bool_opt("attention_bias")?.unwrap_or(false),
        };
        let declared_dtype = f
            .str_opt("dtype")?
            .or(f.str_opt("torch_dtype")?)
            .map(str::to_owned);

        let cfg = ModelConfig {
            arch,
            vocab_size: f.usize_req("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize_req("intermediate_size")?,
            num_layers: f.usize_req("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: f.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            partial_rotary_factor,
            max_position_embeddings: f.usize_opt("max_position_embeddings")?.unwrap_or(4096),
            tie_word_embeddings: f.bool_opt("tie_word_embeddings")?.unwrap_or(false),
            attention_bias,
            mlp_bias: f.bool_opt("mlp_bias")?.unwrap_or(false),
            sliding_window,
            bos_token_id: f.ids("bos_token_id")?.first().copied(),
            eos_token_ids: f.ids("eos_token_id")?,
            declared_dtype,
        };
        if !cfg.rotary_dim().is_multiple_of(2) || cfg.rotary_dim() == 0 {
            return Err(f.err("head_dim", "rotary dimension must be even and non-zero"));
        }
        Ok(cfg)
    }

    /// Number of leading dimensions of each head that RoPE rotates.
    pub fn rotary_dim(&self) -> usize {
        ((self.head_dim as f64) * self.partial_rotary_factor) as usize
    }

    /// Query width: `num_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Key/value width: `num_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// RoPE inverse frequencies `[rotary_dim / 2]`, scaled as the config asks, exactly as HF computes them
    /// (in f32 from an f32 exponent).
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let dim = self.rotary_dim();
        let base = self.rope_theta as f32;
        let mut inv: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        match self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => inv.iter_mut().for_each(|x| *x /= factor as f32),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for x in inv.iter_mut() {
                    let f = *x as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let scaled = if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    };
                    *x = scaled as f32;
                }
            }
        }
        inv
    }
}

/// Attention and key/value head counts (positive, the second dividing the first) and the head
/// dimension (`head_dim`, else `hidden_size / num_attention_heads`).
fn parse_heads(f: &Fields, hidden_size: usize) -> Result<(usize, usize, usize)> {
    let num_heads = f.usize_req("num_attention_heads")?;
    let num_kv_heads = f.usize_opt("num_key_value_heads")?.unwrap_or(num_heads);
    if num_heads == 0 || num_kv_heads == 0 {
        return Err(f.err(
            "num_key_value_heads",
            format!(
                "head counts must be positive (attention {num_heads}, key/value {num_kv_heads})"
            ),
        ));
    }
    if num_heads % num_kv_heads != 0 {
        return Err(f.err(
            "num_key_value_heads",
            format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
        ));
    }
    let head_dim = match f.usize_opt("head_dim")? {
        Some(d) => d,
        None => {
            if !hidden_size.is_multiple_of(num_heads) {
                return Err(f.err(
                    "num_attention_heads",
                    format!("{num_heads} does not divide hidden_size {hidden_size}"),
                ));
            }
            hidden_size / num_heads
        }
    };
    Ok((num_heads, num_kv_heads, head_dim))
}

/// RoPE base, scaling and partial rotary factor. Transformers 5 nests them in
/// `rope_parameters`; older configs keep `rope_theta` at the top and scaling in `rope_scaling`.
fn parse_rope(f: &Fields) -> Result<(f64, RopeScaling, f64)> {
    let path = f.path;
    let rope_params = match f.get("rope_parameters") {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(f.err("rope_parameters", "expected an object")),
    };
    let scaling_obj = match (rope_params, f.get("rope_scaling")) {
        (Some(m), _) => Some(("rope_parameters", m)),
        (None, Some(Value::Object(m))) => Some(("rope_scaling", m)),
        (None, None) => None,
        (None, Some(_)) => return Err(f.err("rope_scaling", "expected an object or null")),
    };
    let nested = scaling_obj.map(|(name, m)| (name, Fields { path, map: m }));
    let rope_theta = match &nested {
        Some((_, n)) if n.get("rope_theta").is_some() => n.f64_opt("rope_theta")?,
        _ => f.f64_opt("rope_theta")?,
    }
    .unwrap_or(10_000.0);
    let rope_scaling = match &nested {
        None => RopeScaling::None,
        Some((name, n)) => parse_scaling(name, n)?,
    };
    let partial_rotary_factor = match &nested {
        Some((_, n)) if n.get("partial_rotary_factor").is_some() => {
            n.f64_opt("partial_rotary_factor")?
        }
        _ => f.f64_opt("partial_rotary_factor")?,
    }
    .unwrap_or(1.0);
    if !(partial_rotary_factor > 0.0 && partial_rotary_factor <= 1.0) {
        return Err(f.err("partial_rotary_factor", "must be in (0, 1]"));
    }
    Ok((rope_theta, rope_scaling, partial_rotary_factor))
}

fn detect_arch(f: &Fields) -> Result<Arch> {
    if let Some(mt) = f.str_opt("model_type")? {
        return Arch::from_model_type(mt).ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: model_type `{mt}` (supported: qwen2, llama, mistral, phi3)",
                f.path.display()
            ))
        });
    }
    if let Some(Value::Array(a)) = f.get("architectures") {
        for v in a {
            if let Some(arch) = v.as_str().and_then(Arch::from_model_type) {
                return Ok(arch);
            }
        }
        return Err(Error::Unsupported(format!(
            "{}: architectures {} (supported: qwen2, llama, mistral, phi3)",
            f.path.display(),
            Value::Array(a.clone())
        )));
    }
    Err(f.err("model_type", "missing (and no known `architectures` entry)"))
}

fn parse_scaling(name: &str, n: &Fields) -> Result<RopeScaling> {
    let ty = n
        .str_opt("rope_type")?
        .or(n.str_opt("type")?)
        .unwrap_or("default");
    let field = |k: &str| format!("{name}.{k}");
    let req = |k: &str| -> Result<f64> {
        n.f64_opt(k)?
            .ok_or_else(|| Error::config(n.path, field(k), "missing"))
    };
    Ok(match ty {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: req("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: req("factor")?,
            low_freq_factor: req("low_freq_factor")?,
            high_freq_factor: req("high_freq_factor")?,
            original_max_position_embeddings: req("original_max_position_embeddings")?,
        },
        other => {
            return Err(Error::Unsupported(format!(
                "{}: {} `{other}` (supported: default, linear, llama3)",
                n.path.display(),
                field("rope_type")
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_json(&v, Path::new("config.json"))
    }

    fn base() -> Value {
        json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
               "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1})
    }

    #[test]
    fn both_layouts_give_same_rope() {
        let mut old = base();
        old["rope_theta"] = json!(500000.0);
        old["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        let mut new = base();
        new["rope_parameters"] =
            json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0});
        let (a, b) = (parse(old).unwrap(), parse(new).unwrap());
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.rope_scaling, b.rope_scaling);
        assert_eq!(a.rope_inv_freq(), b.rope_inv_freq());
        assert_eq!(a.rope_inv_freq()[0], 0.5);
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = base();
        c.as_object_mut().unwrap().remove("hidden_size");
        let e = parse(c).unwrap_err().to_string();
        assert!(e.contains("hidden_size") && e.contains("missing"), "{e}");
        let mut c = base();
        c["num_key_value_heads"] = json!(3);
        assert!(parse(c)
            .unwrap_err()
            .to_string()
            .contains("num_key_value_heads"));
        let mut c = base();
        c["model_type"] = json!("gpt2");
        assert!(matches!(parse(c), Err(Error::Unsupported(_))));
        let mut c = base();
        c["rope_scaling"] = json!({"type": "yarn", "factor": 4.0});
        assert!(parse(c).unwrap_err().to_string().contains("yarn"));
        let mut c = base();
        c["vocab_size"] = json!("ten");
        assert!(parse(c).unwrap_err().to_string().contains("vocab_size"));
    }

    #[test]
    fn eos_may_be_a_list() {
        let mut c = base();
        c["eos_token_id"] = json!([5, 7]);
        assert_eq!(parse(c).unwrap().eos_token_ids, vec![5, 7]);
    }
}
