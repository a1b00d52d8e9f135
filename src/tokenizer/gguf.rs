//! A `tokenizer.json` (and `tokenizer_config.json`) built from GGUF `tokenizer.*` metadata, so a single
//! .gguf file is a complete model and the `tokenizers` crate does the actual work.
//!
//! Two vocabulary families (`tokenizer.ggml.model`):
//! * `gpt2`: byte-level BPE from `tokens` + `merges`. The pre-tokenizer follows `tokenizer.ggml.pre`
//!   as llama.cpp's `llama-vocab.cpp` does: `gpt-2`/`default` (GPT-2 regex), `qwen2` (NFC + Qwen2
//!   regex), `llama-bpe`/`llama3` (Llama-3 regex, merges ignored for whole-word vocabulary hits),
//!   `smollm` (single digits, then the GPT-2 regex).
//! * `llama`: SentencePiece-style BPE with `scores` and byte fallback (`<0xXX>` tokens). Merges are
//!   derived from the scores exactly as transformers' GGUF converter does (every split of a token into
//!   two vocabulary pieces, ranked by the token's score), with a `▁` prefix when
//!   `tokenizer.ggml.add_space_prefix` (default true).
//!
//! Token types (`tokenizer.ggml.token_type`): control (3) and unknown (2) become special added tokens,
//! user-defined (4) plain added tokens (matched in text as llama.cpp matches them); the rest is the
//! model vocabulary. BOS is prepended when `tokenizer.ggml.add_bos_token` says so (default: on for
//! `llama` vocabularies and Llama-3 BPE, as in llama.cpp). The chat template is
//! `tokenizer.chat_template`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::model::gguf::{GgufFile, MetaValue};

const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// The GGUF tokenizer metadata every part of the conversion reads.
struct Meta<'a> {
    file: &'a GgufFile,
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    model: &'a str,
    tokens: Vec<&'a str>,
    /// One GGUF token type per token.
    types: Vec<i64>,
}

impl<'a> Meta<'a> {
    /// Reads the model kind, tokens and token types; None when the file has no tokenizer.
    fn read(file: &'a GgufFile) -> Result<Option<Meta<'a>>> {
        let Some(model) = file.meta("tokenizer.ggml.model") else {
            return Ok(None);
        };
        let err = |key: &str, msg: String| Error::config(&file.path, key, msg);
        let model = model
            .as_str()
            .ok_or_else(|| err("tokenizer.ggml.model", "expected a string".into()))?;
        let mut meta = Meta {
            file,
            model,
            tokens: Vec::new(),
            types: Vec::new(),
        };
        meta.tokens = meta.strings("tokenizer.ggml.tokens")?;
        if meta.tokens.is_empty() {
            return Err(err("tokenizer.ggml.tokens", "missing or empty".into()));
        }
        let n = meta.tokens.len();
        meta.types = match file.meta("tokenizer.ggml.token_type") {
            None => vec![TYPE_NORMAL; n],
            Some(v) => v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map(|f| f as i64))
                        .collect::<Option<Vec<_>>>()
                })
                .filter(|t| t.len() == n)
                .ok_or_else(|| {
                    err(
                        "tokenizer.ggml.token_type",
                        format!("expected {n} integers"),
                    )
                })?,
        };
        Ok(Some(meta))
    }

    fn err(&self, key: &str, msg: String) -> Error {
        Error::config(&self.file.path, key, msg)
    }

    /// An array of strings (empty when absent).
    fn strings(&self, key: &str) -> Result<Vec<&'a str>> {
        match self.file.meta(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(MetaValue::as_str).collect::<Option<Vec<_>>>())
                .ok_or_else(|| self.err(key, "expected an array of strings".into())),
        }
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.file.meta(key).and_then(MetaValue::as_bool)
    }

    /// The id of special token `what` (`bos`, `eos`, `unknown`, `padding`) when it is in range.
    fn id_of(&self, what: &str) -> Option<usize> {
        crate::model::gguf_import::special_id(self.file, what)
            .filter(|&i| (i as usize) < self.tokens.len())
            .map(|i| i as usize)
    }

    /// Control, unknown and user-defined tokens as `added_tokens` entries.
    fn added_tokens(&self) -> Vec<Value> {
        let mut added = Vec::new();
        for (id, (&tok, &ty)) in self.tokens.iter().zip(&self.types).enumerate() {
            if matches!(ty, TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED) {
                added.push(json!({
                    "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": ty != TYPE_USER_DEFINED,
                }));
            }
        }
        added
    }

    fn vocab(&self) -> Map<String, Value> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), json!(i)))
            .collect()
    }
}

/// The vocabulary-family part of `tokenizer.json`, and whether BOS is added by default.
struct Pipeline {
    normalizer: Value,
    pre_tokenizer: Value,
    decoder: Value,
    bpe: Value,
    default_bos: bool,
}

/// `tokenizer.json` and `tokenizer_config.json` contents for a GGUF file, or None when it has no
/// tokenizer metadata.
pub fn tokenizer_files(file: &GgufFile) -> Result<Option<(Value, Value)>> {
    let Some(meta) = Meta::read(file)? else {
        return Ok(None);
    };
    let pipe = match meta.model {
        "gpt2" => gpt2_pipeline(&meta)?,
        "llama" => llama_pipeline(&meta)?,
        other => {
            return Err(Error::Unsupported(format!(
                "{}: tokenizer.ggml.model `{other}` (supported: gpt2, llama)",
                file.path.display()
            )))
        }
    };
    let bos = meta.id_of("bos");
    let eos = meta.id_of("eos");
    let add_bos = meta
        .flag("tokenizer.ggml.add_bos_token")
        .unwrap_or(pipe.default_bos)
        && bos.is_some();
    let add_eos = meta.flag("tokenizer.ggml.add_eos_token").unwrap_or(false) && eos.is_some();
    let post = post_processor(
        &meta.tokens,
        bos.filter(|_| add_bos),
        eos.filter(|_| add_eos),
    );
    let tokenizer_json = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": meta.added_tokens(),
        "normalizer": pipe.normalizer, "pre_tokenizer": pipe.pre_tokenizer, "post_processor": post,
        "decoder": pipe.decoder, "model": pipe.bpe,
    });
    let cfg = tokenizer_config(&meta, add_bos, add_eos)?;
    Ok(Some((tokenizer_json, cfg)))
}

/// Byte-level BPE from `tokens` + `merges`, the pre-tokenizer chosen by `tokenizer.ggml.pre`.
fn gpt2_pipeline(meta: &Meta) -> Result<Pipeline> {
    let pre = meta
        .file
        .meta("tokenizer.ggml.pre")
        .and_then(MetaValue::as_str)
        .unwrap_or("default");
    let merges = meta.strings("tokenizer.ggml.merges")?;
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    let seq = |v: Vec<Value>| json!({"type": "Sequence", "pretokenizers": v});
    let (normalizer, pre_tokenizer, ignore_merges, default_bos) = match pre {
        "gpt-2" | "default" | "gpt2" => (Value::Null, byte_level(true), false, false),
        "qwen2" => (
            json!({"type": "NFC"}),
            seq(vec![split(QWEN2_REGEX), byte_level(false)]),
            false,
            false,
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            seq(vec![split(LLAMA3_REGEX), byte_level(false)]),
            true,
            true,
        ),
        "smollm" => (
            Value::Null,
            seq(vec![
                json!({"type": "Digits", "individual_digits": true}),
                byte_level(true),
            ]),
            false,
            false,
        ),
        other => {
            return Err(Error::Unsupported(format!(
                "{}: tokenizer.ggml.pre `{other}` (supported: gpt-2, default, qwen2, llama-bpe, smollm)",
                meta.file.path.display()
            )))
        }
    };
    let bpe = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "ignore_merges": ignore_merges, "vocab": meta.vocab(), "merges": merges,
    });
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    Ok(Pipeline {
        normalizer,
        pre_tokenizer,
        decoder,
        bpe,
        default_bos,
    })
}

/// SentencePiece-style BPE with byte fallback, merges derived from `scores`.
fn llama_pipeline(meta: &Meta) -> Result<Pipeline> {
    let n = meta.tokens.len();
    let scores: Vec<f64> = match meta.file.meta("tokenizer.ggml.scores") {
        None => vec![0.0; n],
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(MetaValue::as_f64).collect::<Option<Vec<_>>>())
            .filter(|s| s.len() == n)
            .ok_or_else(|| meta.err("tokenizer.ggml.scores", format!("expected {n} numbers")))?,
    };
    let space_prefix = meta.flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let mut norm = Vec::new();
    if space_prefix {
        norm.push(json!({"type": "Prepend", "prepend": "▁"}));
    }
    norm.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let mut dec = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if space_prefix {
        dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let unk = meta.id_of("unknown").map(|i| meta.tokens[i]);
    let bpe = json!({
        "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
        "ignore_merges": false, "vocab": meta.vocab(),
        "merges": spm_merges(&meta.tokens, &meta.types, &scores),
    });
    Ok(Pipeline {
        normalizer: json!({"type": "Sequence", "normalizers": norm}),
        pre_tokenizer: Value::Null,
        decoder: json!({"type": "Sequence", "decoders": dec}),
        bpe,
        default_bos: true,
    })
}

/// The template post-processor adding BOS and/or EOS (`Null` when neither is added).
fn post_processor(tokens: &[&str], bos: Option<usize>, eos: Option<usize>) -> Value {
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let piece = |id: usize| json!({"SpecialToken": {"id": tokens[id], "type_id": 0}});
    let seq = |t: u32| json!({"Sequence": {"id": if t == 0 {"A"} else {"B"}, "type_id": t}});
    let wrap = |t: u32| {
        let mut v = Vec::new();
        v.extend(bos.map(piece));
        v.push(seq(t));
        v.extend(eos.map(piece));
        v
    };
    let single = wrap(0);
    let pair: Vec<Value> = single.iter().cloned().chain(wrap(1)).collect();
    let mut special = Map::new();
    for id in [bos, eos].into_iter().flatten() {
        special.insert(
            tokens[id].to_owned(),
            json!({"id": tokens[id], "ids": [id], "tokens": [tokens[id]]}),
        );
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special})
}

/// `tokenizer_config.json`: the special tokens, BOS/EOS flags and the chat template.
fn tokenizer_config(meta: &Meta, add_bos: bool, add_eos: bool) -> Result<Value> {
    let mut cfg = Map::new();
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    for (key, what) in [
        ("bos_token", "bos"),
        ("eos_token", "eos"),
        ("unk_token", "unknown"),
        ("pad_token", "padding"),
    ] {
        if let Some(id) = meta.id_of(what) {
            cfg.insert(key.into(), json!(meta.tokens[id]));
        }
    }
    cfg.insert("add_bos_token".into(), json!(add_bos));
    cfg.insert("add_eos_token".into(), json!(add_eos));
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    if let Some(t) = meta.file.meta("tokenizer.chat_template") {
        let t = t
            .as_str()
            .ok_or_else(|| meta.err("tokenizer.chat_template", "expected a string".into()))?;
        cfg.insert("chat_template".into(), json!(t));
    }
    Ok(Value::Object(cfg))
}

/// SentencePiece BPE merges from scores: every split of a normal token into two vocabulary pieces,
/// ordered by the merged token's score (highest first), ties by the pieces' ids, as transformers'
/// GGUF tokenizer converter orders them.
fn spm_merges(tokens: &[&str], types: &[i64], scores: &[f64]) -> Vec<[String; 2]> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (id, &tok) in tokens.iter().enumerate() {
        if types[id] != TYPE_NORMAL {
            continue;
        }
        for (cut, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[id], id, li, ri));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    merges
        .into_iter()
        .map(|(_, _, l, r)| [tokens[l].to_owned(), tokens[r].to_owned()])
        .collect()
}

/// The `tokenizer.*` GGUF metadata of a Hugging Face model directory (`tokenizer.json`,
/// `tokenizer_config.json`, `chat_template.jinja`): the inverse of [`tokenizer_files`], in
/// llama.cpp's `convert_hf_to_gguf.py` form. Byte-level BPE only (`tokenizer.ggml.model` "gpt2",
/// `.pre` read off the pre-tokenizer: qwen2, llama-bpe, smollm, gpt-2). The token list is padded to
/// `vocab_size` (the embedding's rows) with `[PAD<id>]` tokens of type unused, as llama.cpp does.
/// `config` (the model's config.json) supplies BOS/EOS ids the tokenizer config does not name.
pub fn gguf_metadata(
    dir: &std::path::Path,
    vocab_size: usize,
    config: &Value,
) -> Result<Vec<(String, MetaValue)>> {
    let read = |name: &str| -> Result<Option<Value>> {
        let p = dir.join(name);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::format(&p, format!("invalid JSON: {e}")))
    };
    let tok_path = dir.join("tokenizer.json");
    let tok = read("tokenizer.json")?
        .ok_or_else(|| Error::format(&tok_path, "missing: a tokenizer.json is needed"))?;
    let tcfg = read("tokenizer_config.json")?.unwrap_or(Value::Null);
    let (tokens, types) = hf_tokens(&tok, vocab_size, &tok_path)?;
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut m: Vec<(String, MetaValue)> = vec![
        ("tokenizer.ggml.model".into(), MetaValue::Str("gpt2".into())),
        (
            "tokenizer.ggml.pre".into(),
            MetaValue::Str(bpe_pre(&tok, &tok_path)?.into()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            MetaValue::Array(hf_merges(&tok, &tok_path)?),
        ),
    ];
    for (what, key, cfg_key) in [
        ("bos", "bos_token", "bos_token_id"),
        ("eos", "eos_token", "eos_token_id"),
        ("unknown", "unk_token", ""),
        ("padding", "pad_token", "pad_token_id"),
    ] {
        let named = tcfg
            .get(key)
            .and_then(token_content)
            .and_then(|t| ids.get(t).copied());
        let from_config = config.get(cfg_key).and_then(|v| match v {
            Value::Array(a) => a.first().and_then(Value::as_u64),
            v => v.as_u64(),
        });
        if let Some(id) = named.map(|i| i as u64).or(from_config) {
            m.push((
                format!("tokenizer.ggml.{what}_token_id"),
                MetaValue::U32(id as u32),
            ));
        }
    }
    let add_bos = match tcfg.get("add_bos_token").and_then(Value::as_bool) {
        Some(b) => b,
        None => post_processor_adds_bos(&tok),
    };
    m.push((
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(add_bos),
    ));
    if let Some(t) = chat_template(dir, &tcfg)? {
        m.push(("tokenizer.chat_template".into(), MetaValue::Str(t)));
    }
    m.push((
        "tokenizer.ggml.tokens".into(),
        MetaValue::Array(tokens.into_iter().map(MetaValue::Str).collect()),
    ));
    m.push((
        "tokenizer.ggml.token_type".into(),
        MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
    ));
    Ok(m)
}

/// A special token of `tokenizer_config.json`: a string or `{"content": ...}`.
fn token_content(v: &Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Value::as_str))
}

/// GGUF token type for ids no token names (llama.cpp's padding `[PAD<id>]` entries).
const TYPE_UNUSED: i32 = 5;

/// Tokens by id (vocabulary, then added tokens) and their GGUF types, padded to `vocab_size`.
fn hf_tokens(
    tok: &Value,
    vocab_size: usize,
    path: &std::path::Path,
) -> Result<(Vec<String>, Vec<i32>)> {
    let vocab = tok
        .pointer("/model/vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::config(path, "model.vocab", "missing or not an object"))?;
    let mut slots: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut put = |id: Option<u64>, t: &str, ty: i32, field: &str| -> Result<()> {
        let slot = id.and_then(|i| slots.get_mut(i as usize)).ok_or_else(|| {
            Error::config(
                path,
                field,
                format!("token `{t}`: id {id:?} is not below the model's vocab_size {vocab_size}"),
            )
        })?;
        *slot = Some((t.to_owned(), ty));
        Ok(())
    };
    for (t, id) in vocab {
        put(id.as_u64(), t, TYPE_NORMAL as i32, "model.vocab")?;
    }
    for a in tok
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = a.get("content").and_then(Value::as_str).unwrap_or_default();
        let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
        let ty = if special {
            TYPE_CONTROL
        } else {
            TYPE_USER_DEFINED
        } as i32;
        put(a.get("id").and_then(Value::as_u64), t, ty, "added_tokens")?;
    }
    Ok(slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.unwrap_or_else(|| (format!("[PAD{i}]"), TYPE_UNUSED)))
        .unzip())
}

/// Merges as GGUF stores them: `"left right"` strings.
fn hf_merges(tok: &Value, path: &std::path::Path) -> Result<Vec<MetaValue>> {
    let merges = tok
        .pointer("/model/merges")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::config(
                path,
                "model.merges",
                "missing: only byte-level BPE tokenizers are supported",
            )
        })?;
    merges
        .iter()
        .map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(p) => match p.as_slice() {
                [Value::String(a), Value::String(b)] => Some(format!("{a} {b}")),
                _ => None,
            },
            _ => None,
        })
        .map(|s| {
            s.map(MetaValue::Str)
                .ok_or_else(|| Error::config(path, "model.merges", "expected strings or pairs"))
        })
        .collect()
}

/// `tokenizer.ggml.pre` for a byte-level BPE pre-tokenizer, recognised by its parts.
fn bpe_pre(tok: &Value, path: &std::path::Path) -> Result<&'static str> {
    let pre = tok.get("pre_tokenizer").cloned().unwrap_or(Value::Null);
    let parts = match pre.get("pretokenizers").and_then(Value::as_array) {
        Some(p) => p.clone(),
        None => vec![pre.clone()],
    };
    let kind = |p: &Value| {
        p.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let regex = |p: &Value| {
        p.pointer("/pattern/Regex")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let byte_level = parts.iter().any(|p| kind(p) == "ByteLevel");
    let digits = parts.iter().any(|p| kind(p) == "Digits");
    let split = parts.iter().find(|p| kind(p) == "Split").and_then(regex);
    Ok(match (byte_level, split.as_deref(), digits) {
        (true, Some(QWEN2_REGEX), false) => "qwen2",
        (true, Some(LLAMA3_REGEX), false) => "llama-bpe",
        (true, None, true) => "smollm",
        (true, None, false) => "gpt-2",
        _ => {
            return Err(Error::Unsupported(format!(
                "{}: pre_tokenizer {pre} (GGUF export knows byte-level BPE with the qwen2, llama3, \
                 smollm or gpt-2 pre-tokenizer)",
                path.display()
            )))
        }
    })
}

/// Whether the post-processor puts a special token before the sequence (a BOS).
fn post_processor_adds_bos(tok: &Value) -> bool {
    let single = tok
        .pointer("/post_processor/single")
        .and_then(Value::as_array);
    single
        .and_then(|s| s.first())
        .is_some_and(|first| first.get("SpecialToken").is_some())
}

/// `tokenizer_config.json`'s `chat_template` (a string), else `chat_template.jinja`.
fn chat_template(dir: &std::path::Path, tcfg: &Value) -> Result<Option<String>> {
    if let Some(t) = tcfg.get("chat_template").and_then(Value::as_str) {
        return Ok(Some(t.to_owned()));
    }
    let p = dir.join("chat_template.jinja");
    if p.is_file() {
        return std::fs::read_to_string(&p)
            .map(Some)
            .map_err(|e| Error::io(&p, e));
    }
    Ok(None)
}
