//! GGUF v3 writing and `rstar quantize`: a Hugging Face model directory or a GGUF file to a GGUF
//! file that llama.cpp loads, its matrices in one ggml block format.
//!
//! Owns the writer ([`write_gguf`]: metadata, tensor table, 32-byte aligned data streamed tensor by
//! tensor into a temporary file renamed at the end, so an error leaves nothing half-written) and the
//! two sources:
//! * a GGUF file: its metadata is copied (file type and alignment updated); a tensor already in
//!   its target type is copied, every other one dequantized and quantized again;
//! * an HF directory: `config.json` becomes `general.architecture` and the `<arch>.*`
//!   hyperparameters, `tokenizer.json` the `tokenizer.*` keys
//!   ([`crate::tokenizer::gguf::gguf_metadata`]), tensors get llama.cpp's names, and for the llama
//!   architecture q/k rows are permuted for interleaved RoPE as `convert_hf_to_gguf.py` does (the
//!   inverse of what [`crate::model::gguf_import`] undoes).
//!
//! Which tensors are quantized follows llama.cpp's `llama-quantize --pure`: 2-D `*.weight`
//! tensors except norms; the rest is written F32. A matrix whose rows are not whole blocks falls
//! back as llama.cpp does: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 when even 32 does
//! not divide the row.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use rayon::prelude::*;
use serde_json::Value;

use crate::backend::cpu::quant::quantize::{can_quantize, quantize};
use crate::backend::cpu::quant::QuantFormat;
use crate::error::{Error, Result};
use crate::model::config::{Arch, ModelConfig, RopeScaling};
use crate::model::gguf::{is_gguf, GgufFile, MetaValue, TensorInfo};
use crate::model::gguf_names::{gguf_name, permute_rows};
use crate::model::quant::{dequantize, GgmlType};
use crate::model::weights::WeightStore;

/// The data alignment this writer uses (`general.alignment`, ggml's default).
const ALIGN: usize = 32;

/// One tensor to write: its name, ggml dims (fastest first) and type.
#[derive(Debug, Clone)]
pub struct TensorPlan {
    pub name: String,
    pub dims: Vec<usize>,
    pub ty: GgmlType,
}

impl TensorPlan {
    /// Bytes of data.
    pub fn bytes(&self) -> usize {
        let n: usize = self.dims.iter().product();
        n / self.ty.block_size() * self.ty.type_size()
    }
}

/// What [`quantize_model`] wrote.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    /// Tensors by type name.
    pub types: BTreeMap<&'static str, usize>,
    /// Matrices that fell back to another type, with the type.
    pub fallbacks: Vec<(String, &'static str)>,
    pub bytes: u64,
}

/// Writes a GGUF v3 file: `metadata`, then each tensor of `plan` with the bytes `data` returns for
/// it (checked against the plan's size). Goes through `<out>.tmp`, renamed when complete.
pub fn write_gguf(
    out: &Path,
    metadata: &[(String, MetaValue)],
    plan: &[TensorPlan],
    mut data: impl FnMut(usize, &TensorPlan) -> Result<Vec<u8>>,
) -> Result<u64> {
    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let io = |e| Error::io(&tmp, e);
        let header = encode_header(metadata, plan)?;
        w.write_all(&header).map_err(io)?;
        let mut written = header.len() as u64;
        for (i, t) in plan.iter().enumerate() {
            let bytes = data(i, t)?;
            if bytes.len() != t.bytes() {
                return Err(Error::Internal(format!(
                    "tensor `{}`: {} bytes of data, the table says {}",
                    t.name,
                    bytes.len(),
                    t.bytes()
                )));
            }
            let pad = bytes.len().next_multiple_of(ALIGN) - bytes.len();
            w.write_all(&bytes).map_err(io)?;
            w.write_all(&[0u8; ALIGN][..pad]).map_err(io)?;
            written += (bytes.len() + pad) as u64;
        }
        w.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        Ok(written)
    })();
    match result {
        Ok(n) => {
            std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Magic, version, counts, metadata, tensor infos (offsets packed at 32-byte alignment) and the
/// padding up to the data section.
fn encode_header(metadata: &[(String, MetaValue)], plan: &[TensorPlan]) -> Result<Vec<u8>> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((plan.len() as u64).to_le_bytes());
    b.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut b, k);
        b.extend(value_type(v).to_le_bytes());
        put_value(&mut b, v);
    }
    let mut offset = 0usize;
    for t in plan {
        if !t.dims[0].is_multiple_of(t.ty.block_size()) {
            return Err(Error::Internal(format!(
                "tensor `{}`: row of {} is not whole {} blocks",
                t.name,
                t.dims[0],
                t.ty.name()
            )));
        }
        put_str(&mut b, &t.name);
        b.extend((t.dims.len() as u32).to_le_bytes());
        for &d in &t.dims {
            b.extend((d as u64).to_le_bytes());
        }
        b.extend(ggml_id(t.ty).to_le_bytes());
        b.extend((offset as u64).to_le_bytes());
        offset += t.bytes().next_multiple_of(ALIGN);
    }
    b.resize(b.len().next_multiple_of(ALIGN), 0);
    Ok(b)
}

fn ggml_id(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::BF16 => 30,
        GgmlType::Quant(f) => f.ggml_id(),
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// GGUF's value type id (an empty array is written as an array of u32).
fn value_type(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::Str(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => b.push(*x),
        MetaValue::I8(x) => b.push(*x as u8),
        MetaValue::U16(x) => b.extend(x.to_le_bytes()),
        MetaValue::I16(x) => b.extend(x.to_le_bytes()),
        MetaValue::U32(x) => b.extend(x.to_le_bytes()),
        MetaValue::I32(x) => b.extend(x.to_le_bytes()),
        MetaValue::F32(x) => b.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => b.push(*x as u8),
        MetaValue::Str(s) => put_str(b, s),
        MetaValue::U64(x) => b.extend(x.to_le_bytes()),
        MetaValue::I64(x) => b.extend(x.to_le_bytes()),
        MetaValue::F64(x) => b.extend(x.to_le_bytes()),
        MetaValue::Array(a) => {
            b.extend(a.first().map_or(4, value_type).to_le_bytes());
            b.extend((a.len() as u64).to_le_bytes());
            for x in a {
                put_value(b, x);
            }
        }
    }
}

/// Whether llama.cpp quantizes a tensor: 2-D (or more) `*weight` tensors except norms.
fn is_matrix(name: &str, dims: &[usize]) -> bool {
    dims.len() >= 2 && name.ends_with("weight") && !name.contains("_norm.weight")
}

/// The type a tensor is written in: `format` for quantizable matrices whose rows are whole
/// blocks, llama.cpp's fallback otherwise, F32 for everything else.
pub fn tensor_type(name: &str, dims: &[usize], format: QuantFormat) -> GgmlType {
    if !is_matrix(name, dims) {
        return GgmlType::F32;
    }
    let cols = dims[0];
    let target = if cols.is_multiple_of(format.block_values()) {
        format
    } else {
        match format {
            QuantFormat::Q4K => QuantFormat::Q5_0,
            QuantFormat::Q5K => QuantFormat::Q5_1,
            QuantFormat::Q6K => QuantFormat::Q8_0,
            QuantFormat::Q2K | QuantFormat::Q3K => QuantFormat::Q4_0,
            f => f,
        }
    };
    if cols.is_multiple_of(target.block_values()) {
        GgmlType::Quant(target)
    } else {
        GgmlType::F16
    }
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for a file of `format` matrices.
fn file_type(format: QuantFormat) -> u32 {
    match format {
        QuantFormat::Q4_0 => 2,
        QuantFormat::Q4_1 => 3,
        QuantFormat::Q8_0 => 7,
        QuantFormat::Q5_0 => 8,
        QuantFormat::Q5_1 => 9,
        QuantFormat::Q2K => 10,
        QuantFormat::Q3K => 11,
        QuantFormat::Q4K => 14,
        QuantFormat::Q5K => 16,
        QuantFormat::Q6K => 18,
    }
}

/// `values` (a tensor in row-major f32) encoded as `ty`, rows quantized in parallel.
pub fn encode(ty: GgmlType, values: &[f32], cols: usize) -> Result<Vec<u8>> {
    let rows = values.len() / cols.max(1);
    let row_bytes = cols / ty.block_size() * ty.type_size();
    let mut out = vec![0u8; rows * row_bytes];
    match ty {
        GgmlType::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 | GgmlType::BF16 => {
            for (o, &v) in out.chunks_exact_mut(2).zip(values) {
                let h = match ty {
                    GgmlType::F16 => f16::from_f32(v).to_le_bytes(),
                    _ => half::bf16::from_f32(v).to_le_bytes(),
                };
                o.copy_from_slice(&h);
            }
        }
        GgmlType::Quant(f) => out
            .par_chunks_mut(row_bytes)
            .zip(values.par_chunks(cols))
            .try_for_each(|(o, x)| quantize(f, x, o))?,
    }
    Ok(out)
}

/// Where the f32 values of a planned tensor come from.
enum Source {
    Gguf(TensorInfo),
    /// An HF tensor, and the head count its rows are permuted by (llama q/k).
    Hf(String, Option<usize>),
}

/// `rstar quantize`: `input` (an HF model directory or a .gguf file) to `out` with matrices in
/// `format`. `progress(i, n, name, type)` is called before each tensor.
pub fn quantize_model(
    input: &Path,
    out: &Path,
    format: QuantFormat,
    progress: &mut dyn FnMut(usize, usize, &str, &str),
) -> Result<QuantizeReport> {
    if !can_quantize(format) {
        return Err(Error::Unsupported(format!(
            "quantizing to {}",
            format.name()
        )));
    }
    let gguf = if input.is_file() && is_gguf(input) {
        Some(GgufFile::open(input)?)
    } else {
        None
    };
    let (mut metadata, named) = match &gguf {
        Some(f) => gguf_source(f)?,
        None => hf_source(input)?,
    };
    metadata.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "general.alignment" | "general.file_type" | "general.quantization_version"
        )
    });
    metadata.push(("general.alignment".into(), MetaValue::U32(ALIGN as u32)));
    metadata.push((
        "general.file_type".into(),
        MetaValue::U32(file_type(format)),
    ));
    metadata.push(("general.quantization_version".into(), MetaValue::U32(2)));
    let plan: Vec<TensorPlan> = named
        .iter()
        .map(|(name, dims, _)| TensorPlan {
            name: name.clone(),
            dims: dims.clone(),
            ty: tensor_type(name, dims, format),
        })
        .collect();
    let mut report = QuantizeReport {
        types: BTreeMap::new(),
        fallbacks: Vec::new(),
        bytes: 0,
    };
    for t in &plan {
        *report.types.entry(t.ty.name()).or_default() += 1;
        if is_matrix(&t.name, &t.dims) && t.ty != GgmlType::Quant(format) {
            report.fallbacks.push((t.name.clone(), t.ty.name()));
        }
    }
    let store = match &gguf {
        Some(_) => None,
        None => Some(WeightStore::open_dir(input)?),
    };
    let n = plan.len();
    report.bytes = write_gguf(out, &metadata, &plan, |i, t| {
        progress(i, n, &t.name, t.ty.name());
        let values = match (&named[i].2, &gguf, &store) {
            // Already in the target type: copied as is, as llama-quantize does.
            (Source::Gguf(info), Some(f), _) if info.ty == t.ty => {
                return Ok(f.tensor_bytes(info).to_vec())
            }
            (Source::Gguf(info), Some(f), _) => gguf_values(f, info)?,
            (Source::Hf(name, perm), _, Some(s)) => hf_values(s, input, name, *perm)?,
            _ => return Err(Error::Internal("tensor source mismatch".into())),
        };
        encode(t.ty, &values, t.dims[0]).map_err(|e| Error::tensor(input, &t.name, e.to_string()))
    })?;
    Ok(report)
}

/// A planned tensor: GGUF name, ggml dims and where its values come from.
type Named = (String, Vec<usize>, Source);
/// GGUF metadata in writing order.
type Metadata = Vec<(String, MetaValue)>;

/// A GGUF input: its metadata and tensors as they are.
fn gguf_source(f: &GgufFile) -> Result<(Metadata, Vec<Named>)> {
    let meta = f
        .header
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let tensors = f
        .header
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.dims.clone(), Source::Gguf(t.clone())))
        .collect();
    Ok((meta, tensors))
}

fn gguf_values(f: &GgufFile, t: &TensorInfo) -> Result<Vec<f32>> {
    let mut v = vec![0f32; t.numel()];
    dequantize(t.ty, f.tensor_bytes(t), &mut v).map_err(|m| Error::tensor(&f.path, &t.name, m))?;
    Ok(v)
}

fn hf_values(s: &WeightStore, dir: &Path, name: &str, perm: Option<usize>) -> Result<Vec<f32>> {
    let w = s.get_any(name)?;
    let values = w.to_f32_vec();
    let Some(heads) = perm else {
        return Ok(values);
    };
    let row = if w.shape.len() >= 2 { w.shape[1] } else { 1 };
    permute_rows(&values, row, heads, true).ok_or_else(|| {
        Error::tensor(
            dir,
            name,
            format!(
                "{} rows do not split into {heads} heads of even size",
                values.len() / row
            ),
        )
    })
}

/// An HF directory: GGUF metadata from config.json and the tokenizer, tensors under llama.cpp's
/// names.
fn hf_source(dir: &Path) -> Result<(Metadata, Vec<Named>)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&cfg_path, format!("invalid JSON: {e}")))?;
    let cfg = ModelConfig::from_json(&json, &cfg_path)?;
    let arch = gguf_arch(&cfg, &cfg_path)?;
    let mut meta = hf_metadata(&cfg, arch, dir);
    meta.extend(crate::tokenizer::gguf::gguf_metadata(
        dir,
        cfg.vocab_size,
        &json,
    )?);
    let store = WeightStore::open_dir(dir)?;
    let mut tensors = Vec::new();
    for hf in store.names() {
        if hf == "lm_head.weight" && cfg.tie_word_embeddings {
            continue;
        }
        let (name, perm) = gguf_name(hf, arch, &cfg)
            .ok_or_else(|| Error::tensor(dir, hf, "no llama.cpp name for this tensor"))?;
        let shape = store.get_any(hf)?.shape;
        let dims = shape.iter().rev().copied().collect();
        tensors.push((name, dims, Source::Hf(hf.to_owned(), perm)));
    }
    tensors.sort_by_key(|(n, _, _)| tensor_order(n));
    Ok((meta, tensors))
}

/// llama.cpp's order: token_embd, the blocks in order, output_norm, output.
fn tensor_order(name: &str) -> (usize, String) {
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse::<usize>().ok());
    match (name.starts_with("token_embd"), layer) {
        (true, _) => (0, name.into()),
        (_, Some(l)) => (1 + l, name.into()),
        _ => (usize::MAX, name.into()),
    }
}

/// The GGUF architecture of a config (Mistral is llama to llama.cpp); Llama 3 RoPE scaling (a
/// `rope_freqs` tensor in GGUF) is refused.
fn gguf_arch(cfg: &ModelConfig, path: &Path) -> Result<&'static str> {
    if let RopeScaling::Llama3 { .. } = cfg.rope_scaling {
        return Err(Error::Unsupported(format!(
            "{}: GGUF export of llama3 rope_scaling",
            path.display()
        )));
    }
    Ok(match cfg.arch {
        Arch::Llama | Arch::Mistral => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Phi3 => "phi3",
    })
}

/// `general.*` and `<arch>.*` keys, as `convert_hf_to_gguf.py` writes them.
fn hf_metadata(cfg: &ModelConfig, arch: &str, dir: &Path) -> Vec<(String, MetaValue)> {
    let u = |v: usize| MetaValue::U32(v as u32);
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let mut m = vec![
        (
            "general.architecture".to_owned(),
            MetaValue::Str(arch.into()),
        ),
        ("general.name".to_owned(), MetaValue::Str(name)),
    ];
    let mut a = |k: &str, v: MetaValue| m.push((format!("{arch}.{k}"), v));
    a("context_length", u(cfg.max_position_embeddings));
    a("embedding_length", u(cfg.hidden_size));
    a("feed_forward_length", u(cfg.intermediate_size));
    a("block_count", u(cfg.num_layers));
    a("attention.head_count", u(cfg.num_heads));
    a("attention.head_count_kv", u(cfg.num_kv_heads));
    a(
        "attention.layer_norm_rms_epsilon",
        MetaValue::F32(cfg.rms_norm_eps as f32),
    );
    a("rope.freq_base", MetaValue::F32(cfg.rope_theta as f32));
    a("rope.dimension_count", u(cfg.rotary_dim()));
    a("vocab_size", u(cfg.vocab_size));
    if cfg.num_heads > 0 && cfg.head_dim != cfg.hidden_size / cfg.num_heads {
        a("attention.key_length", u(cfg.head_dim));
        a("attention.value_length", u(cfg.head_dim));
    }
    if let RopeScaling::Linear { factor } = cfg.rope_scaling {
        a("rope.scaling.type", MetaValue::Str("linear".into()));
        a("rope.scaling.factor", MetaValue::F32(factor as f32));
    }
    if let (Some(w), "phi3") = (cfg.sliding_window, arch) {
        a("attention.sliding_window", u(w));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_types_follow_llama_cpp() {
        let t = |dims: &[usize], f| tensor_type("blk.0.ffn_down.weight", dims, f).name();
        assert_eq!(t(&[512, 8], QuantFormat::Q4K), "Q4_K");
        assert_eq!(t(&[96, 8], QuantFormat::Q4K), "Q5_0");
        assert_eq!(t(&[96, 8], QuantFormat::Q5K), "Q5_1");
        assert_eq!(t(&[96, 8], QuantFormat::Q6K), "Q8_0");
        assert_eq!(t(&[40, 8], QuantFormat::Q6K), "F16");
        assert_eq!(t(&[40, 8], QuantFormat::Q8_0), "F16");
        assert_eq!(
            tensor_type("blk.0.attn_norm.weight", &[512], QuantFormat::Q8_0).name(),
            "F32"
        );
        assert_eq!(
            tensor_type("blk.0.attn_q.bias", &[512], QuantFormat::Q8_0).name(),
            "F32"
        );
    }
}
