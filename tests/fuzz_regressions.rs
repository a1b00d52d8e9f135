//! The fuzz targets on stable Rust: every committed seed corpus file (fuzz/corpus/<target>/) is
//! replayed through the target's body (fuzz/bodies.rs, the same code the cargo-fuzz binaries run),
//! and every input the fuzzers found crashing is kept here inline, next to the fix's reason.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::path::Path;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 13] = [
    ("gguf_header", bodies::gguf_header),
    ("gguf_tokenizer", bodies::gguf_tokenizer),
    ("safetensors", bodies::safetensors),
    ("safetensors_index", bodies::safetensors_index),
    ("model_config", bodies::model_config),
    ("tokenizer_json", bodies::tokenizer_json),
    ("chat_template", bodies::chat_template),
    ("problems", bodies::problems),
    ("trees", bodies::trees),
    ("training_data", bodies::training_data),
    ("search_config", bodies::search_config),
    ("grade", bodies::grade),
    ("steps", bodies::steps),
];

#[test]
fn every_target_has_a_seed_corpus_and_replays_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, body) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name}: empty seed corpus");
        for f in files {
            eprintln!("{name}: {}", f.display());
            body(&std::fs::read(&f).unwrap());
        }
    }
}

/// Runs `body` on `input` in a thread with a 2 MiB stack (what a test or a worker thread gets), so
/// unbounded recursion fails here as it would there.
fn on_small_stack(body: Body, input: Vec<u8>) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || body(&input))
        .unwrap()
        .join()
        .expect("the target panicked");
}

/// The grader's expression parser recursed once per bracket, sign, power or function call: deep
/// nesting in model-written answers overflowed the stack (an abort, not an error). It now stops
/// following at 64 levels (and 1024 tokens) and treats the text as not algebra.
#[test]
fn grader_survives_deep_nesting() {
    let n = 20_000;
    let cases = [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}1", "-".repeat(n)),
        format!("{}1", "2^".repeat(n)),
        format!("{}x", "\\sin ".repeat(n)),
        format!("{}1{}", "\\sqrt{".repeat(n), "}".repeat(n)),
        format!("{}1", "1+".repeat(n)),
    ];
    for c in cases {
        // Prediction and answer differ, so the grader cannot settle it by comparing text.
        on_small_stack(bodies::grade, format!("\\boxed{{{c}}}\0{c}+1").into_bytes());
        on_small_stack(bodies::grade, format!("{c}\07").into_bytes());
    }
}

/// tokenizers 0.22 `expect`s its decoder section to parse (decoders/mod.rs:90): a `tokenizer.json`
/// with a syntax error inside `"decoder"` panicked instead of giving an error (found by the
/// `tokenizer_json` target). The text is now parsed as JSON first and the crate's panics caught.
#[test]
fn tokenizer_json_with_a_broken_decoder_is_an_error() {
    let tok = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [{"id": 6, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "normalizer": {"type": "NFC"}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}, "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true}, "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": fal,u eess"_regex": true}, "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": {"H": 0, "e": 1, "l": 2, "o": 3, "He": 4, "ll": 5}, "merges": ["H e", "l l"]}}"#;
    let err = rstar::tokenizer::Tokenizer::from_texts(tok, None, None, Path::new("m"))
        .expect_err("a broken tokenizer.json loads");
    assert!(err.to_string().contains("m/tokenizer.json"), "{err}");
    let input = [tok.as_bytes(), b"\0{}"].concat();
    bodies::tokenizer_json(&input);
}
