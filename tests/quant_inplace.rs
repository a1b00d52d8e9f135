//! Quantized GGUF weights used in place (ggml blocks from the memory map, never expanded) against
//! the same file dequantized to f32 at load (`QuantLoad::Expand`, whose values are llama.cpp's
//! floats bit for bit: tests/gguf_quant.rs), on the real assets SmolLM2-135M Q4_1 (llama: q/k rows
//! permuted) and Qwen2.5-Coder-0.5B Q4_K_M (Q4_K, Q5_0, Q6_K, Q8_0):
//! - `exact` logits at every prompt position equal the expanded model's within 1e-5 of the row's
//!   largest logit (only the order of the f32 sums differs);
//! - `fast` (8-bit activations, integer dots), on the chat prompt of the transformers fixture,
//!   stays within 15% of the row's largest logit and keeps the argmax at 90% of the positions;
//! - batched, forked and cached sequences give bit-identical logits to the sequence alone, in both
//!   precisions.
//!
//! The transformers comparison of the quantized Qwen file is tests/real_models.rs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rstar::backend::cpu::{Compute, KvDtype, Precision};
use rstar::engine::{Engine, EngineConfig, LoadedModel};
use rstar::model::gguf::GgufFile;
use rstar::model::gguf_import::{GgufModel, QuantLoad};
use rstar::model::Model;

fn smollm2() -> Option<PathBuf> {
    common::asset(&rstar::assets::SMOLLM2).map(|d| d.join(rstar::assets::SMOLLM2_FILE))
}

fn qwen() -> Option<PathBuf> {
    common::asset(&rstar::assets::QWEN_CODER_05B)?;
    Some(rstar::assets::joined_file(&rstar::assets::QWEN_CODER_05B).unwrap())
}

fn load(file: &GgufFile, mode: QuantLoad) -> Model {
    let g = GgufModel::from_file_with(file, mode).unwrap();
    Model::from_store(g.config, &g.store).unwrap()
}

fn compute(p: Precision) -> Compute {
    Compute::new(p, 0, "test").unwrap()
}

/// Logits at every position of `ids`, run from scratch in precision `p`.
fn logits(m: &Model, ids: &[u32], p: Precision) -> Vec<f32> {
    compute(p).run(|| {
        let mut cache = m.new_cache();
        m.forward(ids, &mut cache, true).unwrap()
    })
}

/// Five prompts (ids below 3000: plain words in both vocabularies), 5 to 13 tokens, then 20 and
/// 40: past the row counts from which the quantized matmuls run through weight panels (16 in
/// `exact`, with the dense broadcast GEMM from 32).
fn prompts() -> Vec<Vec<u32>> {
    [5u32, 9, 13, 20, 40]
        .into_iter()
        .enumerate()
        .map(|(p, n)| {
            (0..n)
                .map(|i| (i * 389 + p as u32 * 97) % 2900 + 30)
                .collect()
        })
        .collect()
}

/// The largest `|a - b|` of any row over that row's largest `|b|`, and how many rows' argmax differ.
fn compare(a: &[f32], b: &[f32], vocab: usize) -> (f32, usize) {
    let argmax = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
    let (mut worst, mut flips) = (0f32, 0);
    for (ra, rb) in a.chunks_exact(vocab).zip(b.chunks_exact(vocab)) {
        let scale = rb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = ra
            .iter()
            .zip(rb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        worst = worst.max(d / scale);
        flips += usize::from(argmax(ra) != argmax(rb));
    }
    (worst, flips)
}

/// The chat prompt of `tests/fixtures/gguf/<model>_reference.json` (real text).
fn fixture_prompt(model: &str) -> Vec<u32> {
    let p = common::fixtures().join(format!("gguf/{model}_reference.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    serde_json::from_value(v["prompt_ids"].clone()).unwrap()
}

fn check_against_expanded(gguf: &Path, fixture: &str) {
    let file = GgufFile::open(gguf).unwrap();
    let in_place = load(&file, QuantLoad::InPlace);
    let expanded = load(&file, QuantLoad::Expand);
    // In place the projections keep their blocks: a fraction of the f32 bytes.
    let (qb, fb) = (in_place.weight_bytes(), expanded.weight_bytes());
    assert!(qb * 4 < fb, "weights {qb} bytes in place vs {fb} expanded");
    let v = in_place.config.vocab_size;
    for ids in prompts() {
        let want = logits(&expanded, &ids, Precision::Exact);
        let exact = logits(&in_place, &ids, Precision::Exact);
        let (e, flips) = compare(&exact, &want, v);
        eprintln!(
            "{}: exact, {} tokens: rel {e:.2e}",
            gguf.display(),
            ids.len()
        );
        assert!(e <= 1e-5, "exact in place vs expanded: {e:.3e} relative");
        assert_eq!(flips, 0, "exact argmax");
    }
    let ids = fixture_prompt(fixture);
    let want = logits(&expanded, &ids, Precision::Exact);
    let fast = logits(&in_place, &ids, Precision::Fast);
    let (f, flips) = compare(&fast, &want, v);
    eprintln!(
        "fast, {} tokens: rel {f:.2e}, {flips} argmax flips",
        ids.len()
    );
    // Measured: 4.1e-2 (Qwen Q4_K_M), 1.1e-1 (SmolLM2 Q4_1); a wrong row or block gives ~1.
    assert!(f <= 0.15, "fast in place vs expanded: {f:.3e} relative");
    assert!(
        flips * 10 <= ids.len(),
        "fast argmax differs at {flips} positions"
    );
}

#[test]
fn smollm2_q4_1_in_place_matches_expanded() {
    let Some(gguf) = smollm2() else { return };
    check_against_expanded(&gguf, "smollm2");
}

#[test]
fn qwen_q4_k_m_in_place_matches_expanded() {
    let Some(gguf) = qwen() else { return };
    check_against_expanded(&gguf, "qwen05");
}

/// Forked, appended and batched sequences of the engine on the quantized SmolLM2, in both
/// precisions: the logits of every batch member equal the same tokens run alone, bit for bit.
#[test]
fn quantized_batched_forked_cached_match_alone() {
    let Some(gguf) = smollm2() else { return };
    let lm = Arc::new(LoadedModel::load(&gguf).unwrap());
    for p in [Precision::Exact, Precision::Fast] {
        let checked = compute(p).run(|| engine_checks(&lm));
        assert!(checked >= 8, "{p:?}: {checked} checks");
    }
}

fn engine_checks(lm: &Arc<LoadedModel>) -> usize {
    let alone = |ids: &[u32]| {
        let mut cache = lm.model.new_cache();
        lm.model.forward(ids, &mut cache, false).unwrap()
    };
    let block_size = 4;
    let cfg = EngineConfig {
        block_size,
        kv_budget_bytes: 64 * lm.model.kv_bytes_per_block(block_size, KvDtype::F32),
        max_batch_tokens: 7, // chunked prefill mixed with decode tokens
        max_active: 4,
        kv_dtype: KvDtype::F32,
    };
    let mut eng = Engine::new(lm.clone(), cfg).unwrap();
    let ps = prompts();
    let a = eng.add(&ps[2]).unwrap();
    let b = eng.fork(a).unwrap();
    eng.append(a, &[101, 7]).unwrap();
    eng.append(b, &[55]).unwrap();
    // A prompt sharing a's cached prefix, and an unrelated one.
    let c = eng.add(&ps[2][..9]).unwrap();
    let d = eng.add(&ps[1]).unwrap();
    let mut checked = 0;
    for round in 0..3u32 {
        let ids = [a, b, c, d];
        let got = eng.logits(&ids).unwrap();
        for (id, g) in ids.iter().zip(got) {
            let want = alone(eng.tokens(*id).unwrap());
            assert!(g == want, "round {round}: sequence {} differs", id.0);
            checked += 1;
        }
        for (i, id) in ids.iter().enumerate() {
            eng.append(*id, &[(round * 13 + i as u32 * 5) % 900 + 40])
                .unwrap();
        }
    }
    checked
}
