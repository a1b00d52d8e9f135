//! Tokenization, decoding and chat-template rendering against HF transformers' outputs recorded by
//! scripts/make_fixtures.py, for both tokenizer layouts (merges as pairs + chat_template.jinja, and
//! merges as "a b" strings + chat_template inside tokenizer_config.json).

mod common;

use rstar::tokenizer::{ChatMessage, Tokenizer};
use serde_json::Value;

fn golden() -> Value {
    let text = std::fs::read_to_string(common::fixtures().join("tokenizer_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check(dir: &std::path::Path) {
    let g = golden();
    let tok = Tokenizer::from_dir(dir).unwrap();
    for case in g["encode"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap(),
            want,
            "{}: {text:?}",
            dir.display()
        );
    }
    for case in g["chat"].as_array().unwrap() {
        let msgs: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let gen = case["add_generation_prompt"].as_bool().unwrap();
        let want = case["text"].as_str().unwrap();
        assert_eq!(
            tok.apply_chat_template(&msgs, gen).unwrap(),
            want,
            "{}",
            dir.display()
        );
    }
    let ids: Vec<u32> = serde_json::from_value(g["decode"]["ids"].clone()).unwrap();
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        g["decode"]["text"].as_str().unwrap()
    );
}

#[test]
fn transformers5_layout() {
    check(&common::fixtures().join("tokenizer"));
    check(&common::fixtures().join("models/qwen2-bf16-v5"));
}

#[test]
fn legacy_layout() {
    check(&common::fixtures().join("models/qwen2-bf16-legacy"));
}

#[test]
fn streaming_decode_reassembles_multibyte_text() {
    let tok = Tokenizer::from_dir(&common::fixtures().join("tokenizer")).unwrap();
    let text = "Héllo wörld — naïve café, 数学 题目 🙂 done";
    let ids = tok.encode(text, false).unwrap();
    let mut s = tok.stream();
    let mut out = String::new();
    for id in ids {
        if let Some(d) = s.push(id).unwrap() {
            assert!(!d.contains('\u{FFFD}'));
            out.push_str(&d);
        }
    }
    assert_eq!(out, text);
}

#[test]
fn errors_are_clear() {
    let tok = Tokenizer::from_dir(&common::fixtures().join("tokenizer")).unwrap();
    assert!(tok
        .decode(&[999_999], false)
        .unwrap_err()
        .to_string()
        .contains("999999"));
    let missing = Tokenizer::from_dir(std::path::Path::new("/nonexistent-dir")).unwrap_err();
    assert!(missing.to_string().contains("tokenizer.json"), "{missing}");
}
