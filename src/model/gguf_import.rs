//! GGUF -> the Hugging Face view the rest of librstar speaks.
//!
//! A GGUF file is turned into exactly what a model directory gives: a `config.json` value (parsed by the
//! same [`ModelConfig::from_json`] as a real one, and written verbatim by `rstar convert`) and a
//! [`WeightStore`] keyed by HF tensor names, so [`Model::from_store`](crate::model::Model::from_store)
//! runs unchanged. Mapping:
//!
//! * metadata `{arch}.embedding_length`, `.block_count`, `.feed_forward_length`,
//!   `.attention.head_count(_kv)`, `.attention.key_length`, `.attention.layer_norm_rms_epsilon`,
//!   `.rope.freq_base`, `.rope.dimension_count`, `.rope.scaling.*`, `.context_length` -> config fields;
//! * `token_embd` / `blk.N.attn_q` / ... / `output` -> `model.embed_tokens` / `model.layers.N.self_attn.q_proj`
//!   / ... / `lm_head` (absent `output` means tied embeddings);
//! * llama-architecture files store q/k rows permuted for interleaved RoPE (llama.cpp's
//!   `convert_hf_to_gguf.py` `permute`); the rows are put back in HF's half-split order here.
//!   qwen2 and phi3 files are not permuted.
//!
//! Precision: every tensor is used in place from the mapping (zero copy) in its stored type: the
//! float types as they are, the ggml block formats as [`DType::Quant`] weights that the CPU
//! backend multiplies without expanding them. Permuted q/k rows are whole rows (of elements or of
//! blocks), so they are reordered into an owned copy of the same type. [`QuantLoad::Expand`] instead
//! dequantizes every quantized tensor once at load into owned **f32** buffers (exactly llama.cpp's
//! floats, `d * q + m` in f32): the reference the in-place path is tested against, also chosen by
//! setting `RSTAR_GGUF_EXPAND=1`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::backend::cpu::quant::QuantMatrix;
use crate::backend::{DType, Weight};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::gguf::{GgufFile, MetaValue, TensorInfo};
use crate::model::gguf_names::{hf_name, permute_rows};
use crate::model::quant::{dequantize, GgmlType};
use crate::model::weights::WeightStore;

/// A GGUF model in HF terms.
#[derive(Debug)]
pub struct GgufModel {
    /// The `config.json` this file corresponds to.
    pub config_json: Value,
    pub config: ModelConfig,
    /// Tensors under HF names.
    pub store: WeightStore,
}

struct Meta<'a> {
    file: &'a GgufFile,
    arch: String,
}

impl Meta<'_> {
    fn get(&self, suffix: &str) -> Option<&MetaValue> {
        self.file.meta(&format!("{}.{suffix}", self.arch))
    }

    fn err(&self, key: &str, msg: &str) -> Error {
        Error::config(&self.file.path, key, msg)
    }

    fn usize_opt(&self, suffix: &str) -> Result<Option<usize>> {
        match self.get(suffix) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| self.err(&format!("{}.{suffix}", self.arch), "expected an integer")),
        }
    }

    fn usize_req(&self, suffix: &str) -> Result<usize> {
        self.usize_opt(suffix)?
            .ok_or_else(|| self.err(&format!("{}.{suffix}", self.arch), "missing"))
    }

    fn f64_opt(&self, suffix: &str) -> Result<Option<f64>> {
        match self.get(suffix) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(&format!("{}.{suffix}", self.arch), "expected a number")),
        }
    }
}

/// The token id stored under `tokenizer.ggml.<what>_token_id`, if any.
pub fn special_id(file: &GgufFile, what: &str) -> Option<u64> {
    file.meta(&format!("tokenizer.ggml.{what}_token_id"))
        .and_then(MetaValue::as_u64)
}

/// Builds the HF `config.json` for a GGUF file's model.
pub fn config_json(file: &GgufFile) -> Result<Value> {
    let (m, model_type, hf_class) = Meta::for_file(file)?;
    let hidden = m.usize_req("embedding_length")?;
    let heads = m.usize_req("attention.head_count")?;
    let kv_heads = m.usize_opt("attention.head_count_kv")?.unwrap_or(heads);
    let vocab = vocab_size(file)?;
    let mut c = Map::new();
    c.insert("architectures".into(), json!([hf_class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert(
        "intermediate_size".into(),
        json!(m.usize_req("feed_forward_length")?),
    );
    c.insert(
        "num_hidden_layers".into(),
        json!(m.usize_req("block_count")?),
    );
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    let head_dim = match m.usize_opt("attention.key_length")? {
        Some(d) => {
            c.insert("head_dim".into(), json!(d));
            d
        }
        None if heads > 0 => hidden / heads,
        None => 0,
    };
    insert_rope_and_norm(&m, head_dim, &mut c)?;
    let has = |n: &str| file.tensor(n).is_some();
    c.insert("tie_word_embeddings".into(), json!(!has("output.weight")));
    if m.arch == "llama" {
        c.insert("attention_bias".into(), json!(has("blk.0.attn_q.bias")));
        c.insert("mlp_bias".into(), json!(has("blk.0.ffn_up.bias")));
    }
    if m.arch == "qwen2" {
        c.insert("use_sliding_window".into(), json!(false));
    }
    c.insert("hidden_act".into(), json!("silu"));
    insert_special_ids(file, &mut c);
    c.insert("torch_dtype".into(), json!("float32"));
    Ok(Value::Object(c))
}

impl<'a> Meta<'a> {
    /// The file's architecture as (metadata reader, HF `model_type`, HF class); GGUF forms this
    /// importer does not map (other architectures, per-frequency RoPE factors) are refused.
    fn for_file(file: &'a GgufFile) -> Result<(Meta<'a>, &'static str, &'static str)> {
        let arch = file
            .meta("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| Error::config(&file.path, "general.architecture", "missing"))?
            .to_owned();
        let (model_type, hf_class) = match arch.as_str() {
            "llama" => ("llama", "LlamaForCausalLM"),
            "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
            "phi3" => ("phi3", "Phi3ForCausalLM"),
            other => {
                return Err(Error::Unsupported(format!(
                    "{}: general.architecture `{other}` (supported: llama, qwen2, phi3)",
                    file.path.display()
                )))
            }
        };
        for t in ["rope_freqs.weight", "rope_factors_long.weight"] {
            if file.tensor(t).is_some() {
                return Err(Error::Unsupported(format!(
                "{}: tensor `{t}` (per-frequency RoPE factors: llama3/longrope scaling in GGUF form)",
                file.path.display()
            )));
            }
        }
        Ok((Meta { file, arch }, model_type, hf_class))
    }
}

/// The vocabulary size: the second dimension of `token_embd.weight`.
fn vocab_size(file: &GgufFile) -> Result<usize> {
    let embd = file.tensor("token_embd.weight").ok_or_else(|| {
        Error::tensor(
            &file.path,
            "token_embd.weight",
            "missing from the GGUF file",
        )
    })?;
    match embd.dims.as_slice() {
        [_, v] => Ok(*v),
        d => Err(Error::tensor(
            &file.path,
            "token_embd.weight",
            format!("dims {d:?}, expected 2"),
        )),
    }
}

/// The partial rotary factor, context length, RMSNorm epsilon, RoPE base and scaling.
fn insert_rope_and_norm(m: &Meta, head_dim: usize, c: &mut Map<String, Value>) -> Result<()> {
    if let Some(rot) = m.usize_opt("rope.dimension_count")? {
        if rot != head_dim && head_dim > 0 {
            c.insert(
                "partial_rotary_factor".into(),
                json!(rot as f64 / head_dim as f64),
            );
        }
    }
    c.insert(
        "max_position_embeddings".into(),
        json!(m.usize_opt("context_length")?.unwrap_or(4096)),
    );
    c.insert(
        "rms_norm_eps".into(),
        json!(m
            .f64_opt("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-6)),
    );
    c.insert(
        "rope_theta".into(),
        json!(m.f64_opt("rope.freq_base")?.unwrap_or(10_000.0)),
    );
    match m.get("rope.scaling.type").and_then(MetaValue::as_str) {
        None | Some("none") => {}
        Some("linear") => {
            let factor = m
                .f64_opt("rope.scaling.factor")?
                .ok_or_else(|| m.err("rope.scaling.factor", "missing for linear scaling"))?;
            c.insert(
                "rope_scaling".into(),
                json!({"type": "linear", "factor": factor}),
            );
        }
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "{}: {}.rope.scaling.type `{other}` (supported: none, linear)",
                m.file.path.display(),
                m.arch
            )))
        }
    }
    Ok(())
}

/// `bos_token_id`, and `eos_token_id` from the EOS, end-of-turn and end-of-message ids.
fn insert_special_ids(file: &GgufFile, c: &mut Map<String, Value>) {
    if let Some(b) = special_id(file, "bos") {
        c.insert("bos_token_id".into(), json!(b));
    }
    let mut eos: Vec<u64> = ["eos", "eot", "eom"]
        .iter()
        .filter_map(|w| special_id(file, w))
        .collect();
    eos.dedup();
    match eos.len() {
        0 => {}
        1 => {
            c.insert("eos_token_id".into(), json!(eos[0]));
        }
        _ => {
            c.insert("eos_token_id".into(), json!(eos));
        }
    }
}

/// How the loader holds quantized tensors (`--quant-load in-place|expand`, config key
/// `quant_load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantLoad {
    /// As ggml blocks, read in place from the mapping (the default).
    #[default]
    InPlace,
    /// Dequantized to owned f32 at load: the reference for tests, and 6-8x the memory.
    Expand,
}

impl QuantLoad {
    /// [`QuantLoad::Expand`] when the environment sets `RSTAR_GGUF_EXPAND=1`, else the default.
    pub fn from_env() -> QuantLoad {
        QuantLoad::default().with_env()
    }

    /// This mode, overridden by the environment: `RSTAR_GGUF_EXPAND=1` expands, `=0` keeps the
    /// blocks in place, anything else leaves the mode as it is.
    pub fn with_env(self) -> QuantLoad {
        match std::env::var("RSTAR_GGUF_EXPAND").as_deref() {
            Ok("1") => QuantLoad::Expand,
            Ok("0") => QuantLoad::InPlace,
            _ => self,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QuantLoad::InPlace => "in-place",
            QuantLoad::Expand => "expand",
        }
    }
}

impl std::str::FromStr for QuantLoad {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<QuantLoad, String> {
        match s {
            "in-place" => Ok(QuantLoad::InPlace),
            "expand" => Ok(QuantLoad::Expand),
            _ => Err(format!("`{s}`: expected in-place or expand")),
        }
    }
}

impl std::fmt::Display for QuantLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tensor as a runtime weight, in place in its stored type (see the module docs); rows
/// permuted by llama.cpp are put back into an owned copy.
fn load_tensor(
    file: &GgufFile,
    t: &TensorInfo,
    permute_heads: Option<usize>,
    mode: QuantLoad,
) -> Result<Weight> {
    let shape = t.shape();
    let dtype = match t.ty {
        GgmlType::F32 => DType::F32,
        GgmlType::F16 => DType::F16,
        GgmlType::BF16 => DType::BF16,
        GgmlType::Quant(_) if mode == QuantLoad::Expand => {
            return expand_tensor(file, t, permute_heads)
        }
        GgmlType::Quant(f) => DType::Quant(f),
    };
    let bad = |m: String| Error::tensor(&file.path, &t.name, m);
    let bytes = file.tensor_bytes(t);
    // ggml lists the row length first; a 1-D tensor (a bias) is one row of values.
    let cols = t.dims.first().copied().unwrap_or(1);
    let rows = t.numel() / cols.max(1);
    if let DType::Quant(f) = dtype {
        QuantMatrix::new(f, bytes, rows, cols).map_err(|e| bad(e.to_string()))?;
    }
    let Some(heads) = permute_heads else {
        return Ok(Weight::from_map(file.map(), t.start, t.len, dtype, shape));
    };
    // Biases are 1-D: one value per row, so the same permutation applies to single values.
    let row_bytes = if t.dims.len() == 1 {
        dtype.byte_len(1)
    } else {
        Some(bytes.len() / rows.max(1))
    };
    row_bytes
        .and_then(|rb| permute_rows(bytes, rb, heads, false))
        .map(|b| Weight::from_bytes(&b, dtype, shape))
        .ok_or_else(|| bad(permute_error(t, heads)))
}

fn permute_error(t: &TensorInfo, heads: usize) -> String {
    let rows = if t.dims.len() == 1 {
        t.numel()
    } else {
        t.numel() / t.dims[0].max(1)
    };
    format!(
        "{rows} rows of {} do not split into {heads} heads of even size",
        t.ty.name()
    )
}

/// A quantized tensor dequantized to an owned f32 weight ([`QuantLoad::Expand`]).
fn expand_tensor(file: &GgufFile, t: &TensorInfo, permute_heads: Option<usize>) -> Result<Weight> {
    let mut values = vec![0f32; t.numel()];
    dequantize(t.ty, file.tensor_bytes(t), &mut values)
        .map_err(|m| Error::tensor(&file.path, &t.name, m))?;
    if let Some(heads) = permute_heads {
        let row_len = if t.dims.len() == 1 { 1 } else { t.dims[0] };
        values = permute_rows(&values, row_len, heads, false)
            .ok_or_else(|| Error::tensor(&file.path, &t.name, permute_error(t, heads)))?;
    }
    Ok(Weight::from_f32(&values, t.shape()))
}

impl GgufModel {
    /// Reads the config and every tensor of a parsed GGUF file ([`QuantLoad::from_env`]).
    pub fn from_file(file: &GgufFile) -> Result<GgufModel> {
        Self::from_file_with(file, QuantLoad::from_env())
    }

    /// As [`GgufModel::from_file`], holding quantized tensors as `mode` says.
    pub fn from_file_with(file: &GgufFile, mode: QuantLoad) -> Result<GgufModel> {
        let config_json = config_json(file)?;
        let config = ModelConfig::from_json(&config_json, &file.path)?;
        let arch = config.arch.model_type();
        let mut weights = HashMap::new();
        for t in &file.header.tensors {
            let (name, perm) = hf_name(&t.name, arch, &config).ok_or_else(|| {
                Error::tensor(
                    &file.path,
                    &t.name,
                    format!("not a tensor of a {arch} model that librstar knows"),
                )
            })?;
            // Biases are 1-D: one value per row, so the same permutation applies.
            weights.insert(name, load_tensor(file, t, perm, mode)?);
        }
        Ok(GgufModel {
            config_json,
            config,
            store: WeightStore::from_weights(&file.path, weights),
        })
    }

    /// Opens `path` and reads it.
    pub fn open(path: &Path) -> Result<GgufModel> {
        Self::from_file(&GgufFile::open(path)?)
    }
}

/// `rstar convert`: writes `gguf` as a Hugging Face model directory `out` (created if needed):
/// `config.json`, `model.safetensors` (quantized tensors as the f32 they dequantize to,
/// F16/BF16/F32 as stored), `tokenizer.json`, `tokenizer_config.json` and
/// `generation_config.json`. transformers loads the result and computes the same logits.
pub fn convert(gguf: &Path, out: &Path) -> Result<()> {
    use safetensors::tensor::TensorView;
    let file = GgufFile::open(gguf)?;
    let model = GgufModel::from_file(&file)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let write_json = |name: &str, v: &Value| -> Result<()> {
        let p = out.join(name);
        let text =
            serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("{name}: {e}")))?;
        std::fs::write(&p, text + "\n").map_err(|e| Error::io(&p, e))
    };
    write_json("config.json", &model.config_json)?;
    let mut gen = Map::new();
    for key in ["bos_token_id", "eos_token_id"] {
        if let Some(v) = model.config_json.get(key) {
            gen.insert(key.into(), v.clone());
        }
    }
    write_json("generation_config.json", &Value::Object(gen))?;
    if let Some((tok, cfg)) = crate::tokenizer::gguf::tokenizer_files(&file)? {
        write_json("tokenizer.json", &tok)?;
        write_json("tokenizer_config.json", &cfg)?;
    }
    let weights: Vec<(String, Weight)> = model
        .store
        .names()
        .into_iter()
        .map(|n| {
            let w = model.store.get_any(n)?;
            let w = if w.is_quantized() {
                w.to_f32_weight()
            } else {
                w
            };
            Ok((n.to_owned(), w))
        })
        .collect::<Result<_>>()?;
    let views = weights
        .iter()
        .map(|(n, w)| {
            let dt = match w.dtype {
                DType::F32 => safetensors::Dtype::F32,
                DType::F16 => safetensors::Dtype::F16,
                DType::BF16 => safetensors::Dtype::BF16,
                DType::Quant(_) => unreachable!("quantized tensors were dequantized above"),
            };
            TensorView::new(dt, w.shape.clone(), w.raw())
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::tensor(gguf, n, format!("cannot serialize: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let st = out.join("model.safetensors");
    let meta = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), &st)
        .map_err(|e| Error::format(&st, format!("cannot write: {e}")))
}
