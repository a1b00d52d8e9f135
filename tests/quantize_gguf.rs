//! `rstar quantize` end to end: HF fixture directories and a real GGUF file written as GGUF, loaded
//! back, and checked against independent references: transformers' logits (the fixtures' goldens,
//! tests/fixtures/gguf/smollm2_reference.json) within the quantization error, and the source's
//! tokenizer (tokenizer.json through the `tokenizers` crate) giving the same chat prompt ids.

mod common;

use std::path::Path;

use rstar::backend::cpu::quant::QuantFormat;
use rstar::engine::LoadedModel;
use rstar::model::gguf::GgufFile;
use rstar::model::gguf_write::{quantize_model, write_gguf, TensorPlan};
use rstar::model::quant::GgmlType;

fn quantize(input: &Path, out: &Path, f: QuantFormat) {
    quantize_model(input, out, f, &mut |_, _, _, _| {}).unwrap();
}

/// The largest |logit - transformers| over the fixture's golden prompt.
fn logit_error(model: &LoadedModel, dir: &Path) -> f32 {
    let g = common::golden(dir);
    let mut cache = model.model.new_cache();
    let logits = model.model.forward(&g.input_ids, &mut cache, true).unwrap();
    common::max_abs_diff(&logits, &g.logits)
}

/// Format, the type the matrices get on the tiny fixtures (hidden 64: the K-quants fall back as
/// llama.cpp's do), and the bound on |logit - transformers|. The fixtures' random weights make the
/// logits (|max| 6-8) sensitive: transformers' own bf16 run is 0.10-0.16 from its f32 one, and Q8_0
/// steps are ~2x bf16's. Measured: Q8_0 0.25-0.39, Q5_0 1.9-2.2, Q4_0 3.3-4.6; a wrong tensor name,
/// layout or q/k permutation gives errors the size of the logits themselves even for Q8_0.
const CASES: [(QuantFormat, &str, f32); 4] = [
    (QuantFormat::Q8_0, "Q8_0", 0.6),
    (QuantFormat::Q6K, "Q8_0", 0.6),
    (QuantFormat::Q4_0, "Q4_0", 6.0),
    (QuantFormat::Q4K, "Q5_0", 3.0),
];

#[test]
fn hf_fixtures_quantize_load_and_match_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["qwen2", "mistral", "phi3"] {
        let dir = common::fixtures().join(format!("models/{arch}-f32-v5"));
        let source = LoadedModel::load(&dir).unwrap();
        let q = "Natalia sold clips to 48 of her friends. How many?";
        let want_ids = source.encode_prompt(q, true, Some("Be brief.")).unwrap();
        for (f, ty, tol) in CASES {
            let out = tmp.path().join(format!("{arch}-{}.gguf", f.name()));
            quantize(&dir, &out, f);
            let file = GgufFile::open(&out).unwrap();
            let w = file.tensor("blk.0.ffn_up.weight").unwrap();
            assert_eq!(w.ty.name(), ty, "{arch} {}", f.name());
            assert_eq!(
                file.tensor("blk.0.attn_norm.weight").unwrap().ty.name(),
                "F32"
            );
            let lm = LoadedModel::load(&out).unwrap();
            let err = logit_error(&lm, &dir);
            println!("{arch} {}: max |logit - HF| = {err:.2e}", f.name());
            assert!(err < tol, "{arch} {}: {err} >= {tol}", f.name());
            let ids = lm.encode_prompt(q, true, Some("Be brief.")).unwrap();
            assert_eq!(ids, want_ids, "{arch} {}: chat prompt ids", f.name());
        }
    }
}

#[test]
fn nothing_is_left_behind_on_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("llama.gguf");
    // The llama fixture uses llama3 RoPE scaling, which GGUF stores as a rope_freqs tensor.
    let dir = common::fixtures().join("models/llama-f32-v5");
    let e = quantize_model(&dir, &out, QuantFormat::Q8_0, &mut |_, _, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("llama3"), "{e}");
    // A tensor failing midway (a truncated shard) leaves neither the output nor its temp file.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let src = common::fixtures().join("models/qwen2-f32-v5");
    for f in std::fs::read_dir(&src).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, broken.join(p.file_name().unwrap())).unwrap();
    }
    let shard = broken.join("model-00003-of-00003.safetensors");
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len - 64)
        .unwrap();
    let e = quantize_model(&broken, &out, QuantFormat::Q8_0, &mut |_, _, _, _| {});
    assert!(e.is_err());
    assert!(!out.exists());
    // A tensor failing after the header and a first tensor were written: no output, no temp file.
    let plan: Vec<TensorPlan> = ["a.weight", "b.weight"]
        .map(|n| TensorPlan {
            name: n.into(),
            dims: vec![32, 2],
            ty: GgmlType::F32,
        })
        .into();
    let e = write_gguf(&out, &[], &plan, |i, t| match i {
        0 => Ok(vec![0u8; t.bytes()]),
        _ => Err(rstar::Error::tensor(&out, &t.name, "cannot read")),
    })
    .unwrap_err();
    assert!(e.to_string().contains("b.weight"), "{e}");
    assert!(!out.exists());
    let left = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(left, 1, "only `broken` remains");
}

/// A real GGUF (SmolLM2-135M-Instruct, Q4_1 with Q8_0 embeddings) requantized: metadata and
/// tokenizer carried over, logits near transformers' on the original file.
#[test]
fn requantized_smollm2_matches_transformers() {
    let Some(dir) = common::asset(&rstar::assets::SMOLLM2) else {
        return;
    };
    let src = dir.join(rstar::assets::SMOLLM2_FILE);
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("gguf/smollm2_reference.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2-q8_0.gguf");
    quantize(&src, &out, QuantFormat::Q8_0);
    let (a, b) = (GgufFile::open(&src).unwrap(), GgufFile::open(&out).unwrap());
    for (k, v) in &a.header.metadata {
        if !k.starts_with("general.") || k == "general.architecture" {
            assert_eq!(b.meta(k), Some(v), "metadata {k}");
        }
    }
    let lm = LoadedModel::load(&out).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(r["prompt_ids"].clone()).unwrap();
    let system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    let ids = lm
        .encode_prompt("What is the capital of France?", true, Some(system))
        .unwrap();
    assert_eq!(ids, prompt, "chat prompt ids");
    let v = lm.model.config.vocab_size;
    let mut cache = lm.model.new_cache();
    let logits = lm.model.forward(&prompt, &mut cache, true).unwrap();
    let mut worst = 0f32;
    for (pos, (ti, tv)) in r["topk_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["topk_logits"].as_array().unwrap())
        .enumerate()
    {
        let ti: Vec<usize> = serde_json::from_value(ti.clone()).unwrap();
        let tv: Vec<f32> = serde_json::from_value(tv.clone()).unwrap();
        for (&id, &want) in ti.iter().zip(&tv) {
            worst = worst.max((logits[pos * v + id] - want).abs());
        }
    }
    // Logits of magnitude ~25; requantizing Q4_1 blocks to Q8_0 moves them by ~1 (measured 0.93).
    println!("SmolLM2 Q4_1 -> Q8_0: max |logit - HF| over top-k = {worst:.3}");
    assert!(worst < 2.0, "{worst}");
    // The real answer survives.
    let params = rstar::engine::GenerateParams {
        max_new_tokens: 8,
        ..Default::default()
    };
    let gen = rstar::engine::generate(&std::sync::Arc::new(lm), &prompt, &params, &mut |_| true);
    let text = gen.unwrap().text;
    assert!(text.starts_with("The capital of France is Paris"), "{text}");
}

/// The CLI: `rstar quantize DIR OUT --type q8_0` writes the file and says what it wrote; an unknown
/// type is refused by the parser.
#[test]
fn cli_writes_and_refuses_unknown_types() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q.gguf");
    let dir = common::fixtures().join("models/qwen2-f32-v5");
    let run = |ty: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rstar"))
            .arg("quantize")
            .arg(&dir)
            .arg(&out)
            .args(["--type", ty])
            .output()
            .unwrap()
    };
    let ok = run("q8_0");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(said.contains("wrote") && said.contains("16 Q8_0"), "{said}");
    assert_eq!(GgufFile::open(&out).unwrap().header.tensors.len(), 27);
    let bad = run("q3_k");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("q4_k"));
}
