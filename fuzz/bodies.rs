//! The bodies of the fuzz targets, one function per target taking the raw input: shared by the
//! cargo-fuzz binaries (fuzz/fuzz_targets/<target>.rs) and by tests/fuzz_regressions.rs, which
//! replays every committed corpus file (fuzz/corpus/<target>/) through them on stable Rust. Each
//! must return for any input: a panic, an out-of-bounds read or a runaway allocation is a bug.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use rstar::data::training::{parse_pairs, parse_sft, TokenContext};
use rstar::data::trees::{parse_trees, resume_point};
use rstar::grade;
use rstar::model::config::ModelConfig;
use rstar::model::gguf::GgufFile;
use rstar::model::weights::WeightStore;
use rstar::steps;
use rstar::tokenizer::{render_chat_template, ChatMessage, Tokenizer};

const TOKENIZER: &str = include_str!("../tests/fixtures/tokenizer/tokenizer.json");
const CONFIG: &str = include_str!("../tests/fixtures/tokenizer/tokenizer_config.json");
const TEMPLATE: &str = include_str!("../tests/fixtures/tokenizer/chat_template.jinja");

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let dir = Path::new("fuzz");
        Tokenizer::from_texts(TOKENIZER, Some(CONFIG), Some(TEMPLATE.into()), dir).unwrap()
    })
}

/// Fuzzes the GGUF header parser: any byte string must give Ok or a typed error, never a panic,
/// an out-of-bounds read or an allocation beyond the input's size. The deterministic counterpart that
/// CI also runs tests/gguf_malformed.rs.
pub fn gguf_header(data: &[u8]) {
    if let Ok(h) = rstar::model::gguf::parse(data, Path::new("fuzz.gguf")) {
        for t in &h.tensors {
            assert!(t.start + t.len <= data.len());
        }
    }
}

/// Fuzzes a GGUF file held in memory end to end short of the weights: header, metadata, tensor
/// table, every tensor's bytes, and the tokenizer built from the `tokenizer.*` metadata (which then
/// encodes and decodes a fixed text). Any input must give Ok or a typed error, never a panic.
pub fn gguf_tokenizer(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(data, Path::new("fuzz.gguf")) else {
        return;
    };
    for t in &file.header.tensors {
        assert_eq!(file.tensor_bytes(t).len(), t.len);
    }
    if let Ok(Some(tok)) = Tokenizer::from_gguf(&file) {
        if let Ok(ids) = tok.encode("Hello world 12+3=15 ▁é", true) {
            let _ = tok.decode(&ids, false);
        }
    }
}

/// Fuzzes the safetensors loader on bytes held in memory: header JSON, dtypes, shapes and offsets,
/// then every tensor read back as a weight. Any input must give Ok or a typed error, never a panic or
/// an out-of-bounds read.
pub fn safetensors(data: &[u8]) {
    let Ok(store) = WeightStore::from_bytes(data, Path::new("fuzz/model.safetensors")) else {
        return;
    };
    let names: Vec<String> = store.names().into_iter().map(str::to_owned).collect();
    for name in names {
        let _ = store.get_any(&name);
    }
}

/// Fuzzes the `model.safetensors.index.json` reader: Ok only with plain shard file names.
pub fn safetensors_index(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/model.safetensors.index.json");
    if let Ok(map) = rstar::model::weights::parse_index(text, path) {
        for file in map.values() {
            assert!(!file.contains('/') && file != ".." && !file.is_empty());
        }
    }
}

/// Fuzzes `config.json`: any JSON must give a validated config or a typed error naming the field;
/// the derived sizes and RoPE frequencies of an accepted config must be computable.
pub fn model_config(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(cfg) = ModelConfig::from_json(&value, Path::new("fuzz/config.json")) {
        let _ = (cfg.q_dim(), cfg.kv_dim(), cfg.rotary_dim());
        let _ = cfg.rope_inv_freq();
    }
}

/// Fuzzes `tokenizer.json` + `tokenizer_config.json` (input split at the first NUL byte): any text
/// must give a tokenizer or a typed error; an accepted one encodes, decodes and renders its chat
/// template without panicking.
pub fn tokenizer_json(data: &[u8]) {
    let (tok, cfg) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(tok) = std::str::from_utf8(tok) else {
        return;
    };
    let cfg = cfg.and_then(|c| std::str::from_utf8(c).ok());
    let Ok(t) = Tokenizer::from_texts(tok, cfg, None, Path::new("fuzz")) else {
        return;
    };
    if let Ok(ids) = t.encode("Hello world 12+3=15 ▁é\n", true) {
        let _ = t.decode(&ids, true);
        let mut s = t.stream();
        for id in ids {
            let _ = s.push(id);
        }
    }
    let _ = t.apply_chat_template(&[ChatMessage::new("user", "2+2?")], true);
}

/// Fuzzes chat-template rendering (transformers' Jinja settings): the template is the input up to
/// the first NUL byte, the user message the rest. Any template must render or give a typed error.
pub fn chat_template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, content) = text.split_once('\0').unwrap_or((text, "What is 2+2?"));
    let messages = [
        ChatMessage::new("system", "You are helpful."),
        ChatMessage::new("user", content),
        ChatMessage::new("assistant", "4"),
    ];
    let bos = Some("<s>".to_owned());
    let eos = Some("</s>".to_owned());
    let special = [("bos_token", &bos), ("eos_token", &eos)];
    let _ = render_chat_template(template, &messages, true, &special);
}

/// Fuzzes the problem-file reader (JSON list, `{"example": [...]}` or JSONL in the benchmark
/// formats): Ok with one problem per record, or a typed error naming the record.
pub fn problems(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ps) = rstar::data::problems::parse_problems(text, Path::new("fuzz.jsonl")) {
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.id, i as u64);
        }
    }
}

/// Fuzzes the MCTS trees JSONL: the reader (`rstar extract` and evolve read these) and the resume
/// scanner of a possibly torn output file. The resume point must lie inside the file, on a line end.
pub fn trees(data: &[u8]) {
    let path = Path::new("fuzz/trees.jsonl");
    if let Ok((keep, _)) = resume_point(data, path) {
        assert!(keep <= data.len());
        assert!(keep == 0 || data[keep - 1] == b'\n');
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(records) = parse_trees(text, path) {
        let cfg = rstar::data::extract::ExtractConfig::default();
        for r in &records {
            let _ = r.tree.best_answer();
            let _ = rstar::data::extract::sft_records(r, &cfg);
            let _ = rstar::data::extract::pair_records(r, &cfg);
        }
    }
}

/// Fuzzes the SFT and preference-pair readers (JSON array or JSONL; token-id, text, chat-message
/// and pair records) with a small real tokenizer and its chat template. Accepted examples must hold
/// in-vocabulary ids only, within `seq_len`.
pub fn training_data(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let t = tokenizer();
    let cx = TokenContext {
        tokenizer: Some(t),
        eos: Some(0),
        vocab_size: t.vocab_size(),
        seq_len: 64,
    };
    let path = Path::new("fuzz/data.jsonl");
    if let Ok(l) = parse_sft(text, path, &cx) {
        for ex in &l.examples {
            assert!(ex.ids.len() <= cx.seq_len && ex.ids.len() == ex.target.len());
            assert!(ex.ids.iter().all(|&i| (i as usize) < cx.vocab_size));
        }
    }
    if let Ok(l) = parse_pairs(text, path, &cx) {
        for p in &l.examples {
            assert!(!p.pos.is_empty() && !p.neg.is_empty());
            assert!(p.prefix.len() + p.pos.len().max(p.neg.len()) <= cx.seq_len);
        }
    }
}

/// Fuzzes the search configuration (TOML, or JSON when it starts with `{`): Ok only with a config
/// that passes its own validation, else a typed error naming the key.
pub fn search_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((cfg, _keys)) = rstar::search::config::parse_keys(text, Path::new("fuzz.toml")) {
        assert!(cfg.validate().is_ok());
    }
}

/// Fuzzes the grader on two strings (prediction and ground truth, split at the first NUL byte):
/// answer extraction, parsing and `equal` must return, never panic; `equal` is reflexive on what
/// it parses as a number.
pub fn grade(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pred, answer) = text.split_once('\0').unwrap_or((text, "42"));
    let _ = grade::extract_answer(pred);
    let _ = grade::last_boxed(pred);
    let _ = grade::extract_or_whole(pred);
    let _ = grade::parse_answer(answer);
    let _ = grade::equal(pred, answer);
}

/// Fuzzes the step parser and extractor: step classification, code extraction and clean-up, program
/// assembly from ancestor steps, and observation formatting, on model-written text.
pub fn steps(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parts: Vec<&str> = text.split('\0').collect();
    let (step, ancestors) = parts.split_last().unwrap_or((&"", &[]));
    let _ = steps::classify(step);
    let code = steps::extract_code_block(step);
    let _ = steps::clean_code(&code);
    let _ = steps::assemble_program(ancestors, step);
    let obs = steps::format_observation(step);
    let _ = steps::output_block(&obs);
    let _ = steps::truncate_middle(step, 64, 16);
}
