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

/// `tokenizer.json` and `tokenizer_config.json` contents for a GGUF file, or None when it has no
/// tokenizer metadata.
pub fn tokenizer_files(file: &GgufFile) -> Result<Option<(Value, Value)>> {
    let Some(model) = file.meta("tokenizer.ggml.model") else {
        return Ok(None);
    };
    let err = |key: &str, msg: String| Error::config(&file.path, key, msg);
    let model = model
        .as_str()
        .ok_or_else(|| err("tokenizer.ggml.model", "expected a string".into()))?;
    let strings = |key: &str| -> Result<Vec<&str>> {
        match file.meta(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(MetaValue::as_str).collect::<Option<Vec<_>>>())
                .ok_or_else(|| err(key, "expected an array of strings".into())),
        }
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err(err("tokenizer.ggml.tokens", "missing or empty".into()));
    }
    let types: Vec<i64> = match file.meta("tokenizer.ggml.token_type") {
        None => vec![TYPE_NORMAL; tokens.len()],
        Some(v) => v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_f64().map(|f| f as i64))
                    .collect::<Option<Vec<_>>>()
            })
            .filter(|t| t.len() == tokens.len())
            .ok_or_else(|| {
                err(
                    "tokenizer.ggml.token_type",
                    format!("expected {} integers", tokens.len()),
                )
            })?,
    };
    let flag = |key: &str| file.meta(key).and_then(MetaValue::as_bool);
    let id_of = |what: &str| {
        crate::model::gguf_import::special_id(file, what)
            .filter(|&i| (i as usize) < tokens.len())
            .map(|i| i as usize)
    };
    let pre = file
        .meta("tokenizer.ggml.pre")
        .and_then(MetaValue::as_str)
        .unwrap_or("default");

    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        if matches!(ty, TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED) {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty != TYPE_USER_DEFINED,
            }));
        }
    }
    let vocab: Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), json!(i)))
        .collect();

    let (normalizer, pre_tokenizer, decoder, bpe, default_bos) = match model {
        "gpt2" => {
            let merges = strings("tokenizer.ggml.merges")?;
            let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
            let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
            let seq = |v: Vec<Value>| json!({"type": "Sequence", "pretokenizers": v});
            let (norm, pre_tok, ignore_merges, bos) = match pre {
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
                        file.path.display()
                    )))
                }
            };
            let bpe = json!({
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
            });
            let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
            (norm, pre_tok, decoder, bpe, bos)
        }
        "llama" => {
            let scores: Vec<f64> = match file.meta("tokenizer.ggml.scores") {
                None => vec![0.0; tokens.len()],
                Some(v) => v
                    .as_array()
                    .and_then(|a| a.iter().map(MetaValue::as_f64).collect::<Option<Vec<_>>>())
                    .filter(|s| s.len() == tokens.len())
                    .ok_or_else(|| {
                        err(
                            "tokenizer.ggml.scores",
                            format!("expected {} numbers", tokens.len()),
                        )
                    })?,
            };
            let space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
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
            let unk = id_of("unknown").map(|i| tokens[i]);
            let bpe = json!({
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                "ignore_merges": false, "vocab": vocab, "merges": spm_merges(&tokens, &types, &scores),
            });
            (
                json!({"type": "Sequence", "normalizers": norm}),
                Value::Null,
                json!({"type": "Sequence", "decoders": dec}),
                bpe,
                true,
            )
        }
        other => {
            return Err(Error::Unsupported(format!(
                "{}: tokenizer.ggml.model `{other}` (supported: gpt2, llama)",
                file.path.display()
            )))
        }
    };

    let bos = id_of("bos");
    let eos = id_of("eos");
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(default_bos) && bos.is_some();
    let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(false) && eos.is_some();
    let post = if add_bos || add_eos {
        let piece = |id: usize| json!({"SpecialToken": {"id": tokens[id], "type_id": 0}});
        let seq = |t: u32| json!({"Sequence": {"id": if t == 0 {"A"} else {"B"}, "type_id": t}});
        let wrap = |t: u32| {
            let mut v = Vec::new();
            v.extend(bos.filter(|_| add_bos).map(piece));
            v.push(seq(t));
            v.extend(eos.filter(|_| add_eos).map(piece));
            v
        };
        let single = wrap(0);
        let pair: Vec<Value> = single.iter().cloned().chain(wrap(1)).collect();
        let mut special = Map::new();
        for id in [bos.filter(|_| add_bos), eos.filter(|_| add_eos)]
            .into_iter()
            .flatten()
        {
            special.insert(
                tokens[id].to_owned(),
                json!({"id": tokens[id], "ids": [id], "tokens": [tokens[id]]}),
            );
        }
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special})
    } else {
        Value::Null
    };
    let tokenizer_json = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post,
        "decoder": decoder, "model": bpe,
    });

    let mut cfg = Map::new();
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    for (key, what) in [
        ("bos_token", "bos"),
        ("eos_token", "eos"),
        ("unk_token", "unknown"),
        ("pad_token", "padding"),
    ] {
        if let Some(id) = id_of(what) {
            cfg.insert(key.into(), json!(tokens[id]));
        }
    }
    cfg.insert("add_bos_token".into(), json!(add_bos));
    cfg.insert("add_eos_token".into(), json!(add_eos));
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    if let Some(t) = file.meta("tokenizer.chat_template") {
        let t = t
            .as_str()
            .ok_or_else(|| err("tokenizer.chat_template", "expected a string".into()))?;
        cfg.insert("chat_template".into(), json!(t));
    }
    Ok(Some((tokenizer_json, Value::Object(cfg))))
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
