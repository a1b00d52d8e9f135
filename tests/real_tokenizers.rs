//! llama.cpp's tokenizer test vectors (ggml-vocab-*.gguf with .inp texts and .out ids, produced by HF
//! tokenizers) through both paths: a tokenizer built from GGUF metadata, and real tokenizer.json files
//! (Qwen2.5's vocabulary as shipped with Qwen3, and Llama-3's). Assets come from the package
//! registries (see rstar::assets) and are cached.
//!
//! Also the ChatML `messages` SFT loader against transformers' `apply_chat_template` (token ids and
//! the assistant-only loss mask, scripts/make_chatml_reference.py) on Qwen2.5's tokenizer.

mod common;

use std::path::Path;

use rstar::assets::{LLAMA3_TOKENIZER, LLAMA_CPP_VOCABS, QWEN_CODER_05B, QWEN_TOKENIZER};
use rstar::model::gguf::GgufFile;
use rstar::tokenizer::Tokenizer;

/// (text, expected ids) pairs of one vocabulary.
fn vectors(dir: &Path, vocab: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.out"))).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    assert_eq!(texts.pop(), Some(""), "the .inp file ends with a separator");
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len());
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

fn check(tok: &Tokenizer, cases: &[(String, Vec<u32>)], what: &str) {
    let mut failed = Vec::new();
    for (text, want) in cases {
        let got = tok.encode(text, false).unwrap();
        if &got != want {
            failed.push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{what}: {}/{} vectors differ:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    eprintln!("{what}: {}/{} vectors pass", cases.len(), cases.len());
}

fn gguf_path(vocab: &str) {
    let Some(dir) = common::asset(&LLAMA_CPP_VOCABS) else {
        return;
    };
    let file = GgufFile::open(&dir.join(format!("ggml-vocab-{vocab}.gguf"))).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap().unwrap();
    check(
        &tok,
        &vectors(&dir, vocab),
        &format!("ggml-vocab-{vocab}.gguf metadata"),
    );
}

#[test]
fn gguf_metadata_qwen2() {
    gguf_path("qwen2");
}

#[test]
fn gguf_metadata_llama_bpe() {
    gguf_path("llama-bpe");
}

#[test]
fn gguf_metadata_phi3() {
    gguf_path("phi-3");
}

#[test]
fn gguf_metadata_gpt2() {
    gguf_path("gpt-2");
}

fn json_path(asset: &rstar::assets::Asset, vocab: &str) {
    let (Some(vocabs), Some(dir)) = (common::asset(&LLAMA_CPP_VOCABS), common::asset(asset)) else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    check(
        &tok,
        &vectors(&vocabs, vocab),
        &format!("{} tokenizer.json", asset.id),
    );
}

#[test]
fn tokenizer_json_qwen25() {
    json_path(&QWEN_TOKENIZER, "qwen2");
}

#[test]
fn tokenizer_json_llama3() {
    json_path(&LLAMA3_TOKENIZER, "llama-bpe");
}

/// The loader's ids and loss mask for each reference conversation equal transformers'.
fn check_chatml(tok: &Tokenizer, what: &str) {
    use rstar::data::training::{parse_sft, TokenContext};
    let path = common::fixtures().join("chatml/qwen25_messages.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    let cx = TokenContext {
        tokenizer: Some(tok),
        eos: None,
        vocab_size: 151_936,
        seq_len: 1 << 20,
    };
    for (i, case) in cases.iter().enumerate() {
        let record = serde_json::json!({ "messages": case["messages"] }).to_string();
        let loaded = parse_sft(&record, &path, &cx).unwrap();
        let ex = &loaded.examples[0];
        let want_ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        let want_mask: Vec<bool> = case["assistant_masks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_u64() == Some(1))
            .collect();
        assert_eq!(ex.ids, want_ids, "{what}: case {i}: token ids");
        assert_eq!(ex.target, want_mask, "{what}: case {i}: loss mask");
    }
    eprintln!(
        "{what}: {} ChatML conversations match transformers",
        cases.len()
    );
}

/// Qwen2.5-Coder's chat template, from its GGUF.
fn qwen25_template(file: &GgufFile) -> String {
    let t = file.meta("tokenizer.chat_template").unwrap();
    t.as_str().unwrap().to_owned()
}

#[test]
fn chatml_messages_match_transformers() {
    let (Some(tok_dir), Some(gguf_dir)) = (
        common::asset(&QWEN_TOKENIZER),
        common::asset(&QWEN_CODER_05B),
    ) else {
        return;
    };
    let file =
        GgufFile::open_metadata(&gguf_dir.join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")).unwrap();
    let json = std::fs::read_to_string(tok_dir.join("tokenizer.json")).unwrap();
    let cfg = std::fs::read_to_string(tok_dir.join("tokenizer_config.json")).unwrap();
    let tok =
        Tokenizer::from_texts(&json, Some(&cfg), Some(qwen25_template(&file)), &tok_dir).unwrap();
    check_chatml(&tok, "tokenizer.json + Qwen2.5 template");
    let tok = Tokenizer::from_gguf(&file).unwrap().unwrap();
    check_chatml(&tok, "Qwen2.5-Coder GGUF tokenizer");
}
