//! Checkpoints in the formats other tools read, and resumable trainer state.
//!
//! * A Hugging Face model directory: the source `config.json` (dtype set to float32),
//!   `model.safetensors` in f32 under the checkpoint's own tensor names (tied models without
//!   `lm_head.weight`), and the tokenizer files copied. `transformers` and librstar both load it.
//! * A PPM in the layout asked for ([`PpmLayout`]): split, that directory plus
//!   `value_head.safetensors` with `v_head.summary.weight` `[1, hidden]` and `v_head.summary.bias`
//!   `[1]`; or combined (trl's), one `model.safetensors` with the decoder keys prefixed
//!   `pretrained_model.` and the two head tensors. Reading goes through
//!   [`crate::model::ppm_layout`], the loader scoring uses.
//! * A LoRA adapter in PEFT's layout: `adapter_config.json` and `adapter_model.safetensors` with keys
//!   `base_model.model.<module>.lora_{A,B}.weight`.
//! * Trainer state: `state.safetensors` with parameters and AdamW moments and, in its metadata
//!   (`trainer_state`), the counters and the config, written atomically (synced temporary file,
//!   then rename) so parameters and counters always belong to the same step; `trainer_state.json`
//!   repeats the counters for people (read only for state written before the metadata key).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};

use crate::data::durable::write_atomic;
use crate::error::{Error, Result};
use crate::model::ppm_layout::{PpmLayout, COMBINED_PREFIX, VALUE_HEAD_FILE};
use crate::model::WeightStore;
use crate::train::model::{LoraSpec, TrainModel};

/// Writes f32 tensors to a safetensors file (via a temporary file and a rename).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Internal(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| Error::Internal(format!("serializing {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Saves `model` (LoRA adapters merged into a copy if present) as a Hugging Face directory, with
/// the config and tokenizer files of `src`; a PPM's value head goes where `layout` says.
pub fn save_model_dir(model: &TrainModel, src: &Path, dir: &Path, layout: PpmLayout) -> Result<()> {
    create_dir(dir)?;
    if model.lora().is_some() {
        let mut merged = model.clone();
        merged.merge_lora();
        return save_model_dir(&merged, src, dir, layout);
    }
    let mut cfg = read_json(&src.join("config.json"))?;
    if let Some(o) = cfg.as_object_mut() {
        if o.contains_key("torch_dtype") {
            o.insert("torch_dtype".into(), json!("float32"));
        }
        if o.contains_key("dtype") || !o.contains_key("torch_dtype") {
            o.insert("dtype".into(), json!("float32"));
        }
    }
    write_json(&dir.join("config.json"), &cfg)?;
    // A single file replaces any shard index of the source, and a head file of another layout.
    let index = dir.join("model.safetensors.index.json");
    remove_if_file(&index)?;
    let mut tensors = model.checkpoint_tensors();
    let head = model.value_head_tensors();
    let separate = dir.join(VALUE_HEAD_FILE);
    match layout {
        PpmLayout::Combined if !head.is_empty() => {
            for t in &mut tensors {
                t.0 = format!("{COMBINED_PREFIX}{}", t.0);
            }
            tensors.extend(head.iter().cloned());
            remove_if_file(&separate)?;
        }
        _ => remove_if_file(&separate)?,
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&dir.join("model.safetensors"), &tensors, Some(meta))?;
    for f in tokenizer_files(src) {
        if let Some(name) = f.file_name() {
            let to = dir.join(name);
            if to != f {
                std::fs::copy(&f, &to).map_err(|e| Error::io(&to, e))?;
            }
        }
    }
    if layout == PpmLayout::Split && !head.is_empty() {
        write_safetensors(&separate, &head, None)?;
    }
    Ok(())
}

fn remove_if_file(path: &Path) -> Result<()> {
    if path.is_file() {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

const PEFT_PREFIX: &str = "base_model.model.";

/// Writes the adapters of `model` in PEFT's layout.
pub fn save_peft(model: &TrainModel, dir: &Path, base_model: &str) -> Result<()> {
    let spec = model
        .lora()
        .ok_or_else(|| Error::InvalidArgument("the model has no LoRA adapters".into()))?;
    create_dir(dir)?;
    let tensors = model.lora_tensors();
    let mut modules: Vec<String> = tensors
        .iter()
        .map(|(n, _, _)| n.rsplit('.').next().unwrap_or(n).to_owned())
        .collect();
    modules.sort();
    modules.dedup();
    let cfg = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
    });
    write_json(&dir.join("adapter_config.json"), &cfg)?;
    let mut out = Vec::new();
    for (name, a, b) in tensors {
        out.push((
            format!("{PEFT_PREFIX}{name}.lora_A.weight"),
            a.shape.clone(),
            &a.value[..],
        ));
        out.push((
            format!("{PEFT_PREFIX}{name}.lora_B.weight"),
            b.shape.clone(),
            &b.value[..],
        ));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&dir.join("adapter_model.safetensors"), &out, Some(meta))
}

/// Adds the PEFT adapter in `dir` to `model` (which must have none yet).
pub fn load_peft(model: &mut TrainModel, dir: &Path) -> Result<()> {
    let cfg_path = dir.join("adapter_config.json");
    let cfg = read_json(&cfg_path)?;
    let field = |f: &str| {
        cfg.get(f)
            .ok_or_else(|| Error::config(&cfg_path, f, "missing"))
    };
    if field("peft_type")?.as_str() != Some("LORA") {
        return Err(Error::config(
            &cfg_path,
            "peft_type",
            "only LORA adapters are supported",
        ));
    }
    let rank = field("r")?
        .as_u64()
        .filter(|&r| r > 0)
        .ok_or_else(|| Error::config(&cfg_path, "r", "expected a positive integer"))?;
    let alpha = field("lora_alpha")?
        .as_f64()
        .ok_or_else(|| Error::config(&cfg_path, "lora_alpha", "expected a number"))?;
    let targets = match field("target_modules")? {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => {
            return Err(Error::config(
                &cfg_path,
                "target_modules",
                "expected a list",
            ))
        }
    };
    model.add_lora(
        LoraSpec {
            rank: rank as usize,
            alpha: alpha as f32,
            targets,
        },
        0,
    )?;
    let file = dir.join("adapter_model.safetensors");
    let store = WeightStore::open_files(&[file])?;
    for p in &mut model.params {
        if !(p.name.ends_with(".lora_A.weight") || p.name.ends_with(".lora_B.weight")) {
            continue;
        }
        let key = format!("{PEFT_PREFIX}{}", p.name);
        p.value = store.get(&key, &p.shape)?.to_f32_vec();
    }
    Ok(())
}

/// Paths of the resumable state inside a checkpoint directory.
pub fn state_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join("state.safetensors"),
        dir.join("trainer_state.json"),
    )
}

/// Writes parameters, optimizer moments and `meta` (counters, config) to `dir`.
pub fn save_state(
    dir: &Path,
    model: &TrainModel,
    m: &[Vec<f32>],
    v: &[Vec<f32>],
    meta: &Value,
) -> Result<()> {
    create_dir(dir)?;
    let mut t: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (i, p) in model.params.iter().enumerate() {
        t.push((format!("param/{}", p.name), p.shape.clone(), &p.value));
        if !m[i].is_empty() {
            t.push((format!("adam_m/{}", p.name), p.shape.clone(), &m[i]));
            t.push((format!("adam_v/{}", p.name), p.shape.clone(), &v[i]));
        }
    }
    let (st, js) = state_paths(dir);
    let text = serde_json::to_string(meta).map_err(|e| Error::Internal(e.to_string()))?;
    let metadata = HashMap::from([(STATE_KEY.to_string(), text)]);
    write_safetensors(&st, &t, Some(metadata))?;
    write_json(&js, meta)
}

/// The safetensors metadata key holding the trainer state's counters and config.
const STATE_KEY: &str = "trainer_state";

/// The counters and config saved with the state file `st` (its `trainer_state` metadata; else,
/// for older state, `trainer_state.json` next to it). Reads only the file's header.
fn read_state_meta(st: &Path, js: &Path) -> Result<Value> {
    use std::io::Read;
    let mut f = std::fs::File::open(st).map_err(|e| Error::io(st, e))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| Error::io(st, e))?;
    let n = u64::from_le_bytes(n);
    let len = f.metadata().map_err(|e| Error::io(st, e))?.len();
    if n > len.saturating_sub(8) || n > 100 << 20 {
        return Err(Error::format(
            st,
            format!("header length {n} exceeds the file"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(st, e))?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| Error::format(st, format!("invalid header JSON: {e}")))?;
    match header.pointer(&format!("/__metadata__/{STATE_KEY}")) {
        Some(Value::String(text)) => serde_json::from_str(text)
            .map_err(|e| Error::format(st, format!("metadata `{STATE_KEY}`: {e}"))),
        Some(_) => Err(Error::config(st, STATE_KEY, "expected a JSON string")),
        None => read_json(js),
    }
}

/// Restores what [`save_state`] wrote into `model` and the moment buffers; returns the metadata.
pub fn load_state(
    dir: &Path,
    model: &mut TrainModel,
    m: &mut [Vec<f32>],
    v: &mut [Vec<f32>],
) -> Result<Value> {
    let (st, js) = state_paths(dir);
    let meta = read_state_meta(&st, &js)?;
    let store = WeightStore::open_files(&[st])?;
    for (i, p) in model.params.iter_mut().enumerate() {
        p.value = store
            .get(&format!("param/{}", p.name), &p.shape)?
            .to_f32_vec();
        if !m[i].is_empty() {
            m[i] = store
                .get(&format!("adam_m/{}", p.name), &p.shape)?
                .to_f32_vec();
            v[i] = store
                .get(&format!("adam_v/{}", p.name), &p.shape)?
                .to_f32_vec();
        }
    }
    Ok(meta)
}

/// The tokenizer-side files of a model directory that a saved checkpoint copies.
pub fn tokenizer_files(dir: &Path) -> Vec<PathBuf> {
    [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "generation_config.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.is_file())
    .collect()
}
