//! Process reward model scoring against the reference in scripts/make_fixtures.py (transformers'
//! Qwen2Model final hidden states + the value head in torch), for rStar-Math's PPM in both layouts and
//! for Qwen2.5-Math-PRM's head; batched tree scoring equals scoring alone and shares prefixes.

mod common;

use std::sync::Arc;

use rstar::engine::ppm::{Ppm, Scorer};
use rstar::engine::EngineConfig;

struct Golden(Vec<(Vec<u32>, Vec<f32>, Vec<f32>)>);

fn golden() -> Golden {
    let bytes = std::fs::read(common::fixtures().join("ppm/golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |n: &str| -> Vec<f32> {
        st.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut v = Vec::new();
    for i in 0.. {
        let Ok(t) = st.tensor(&format!("ids_{i}")) else {
            break;
        };
        let ids = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        v.push((ids, f32s(&format!("rstar_{i}")), f32s(&format!("prm_{i}"))));
    }
    Golden(v)
}

fn check(name: &str, pick: impl Fn(&(Vec<u32>, Vec<f32>, Vec<f32>)) -> &Vec<f32>) {
    let g = golden();
    let ppm = Arc::new(Ppm::load(&common::fixtures().join("ppm").join(name)).unwrap());
    for case in &g.0 {
        let all = ppm.score_all_positions(&case.0).unwrap();
        let err = common::max_abs_diff(&all, pick(case));
        println!("{name}: max |value - reference| = {err:.2e}");
        assert!(err < 2e-3, "{name}: {err}");
    }
    let cfg = EngineConfig {
        block_size: 4,
        kv_budget_bytes: 1 << 22,
        ..EngineConfig::default()
    };
    let mut scorer = Scorer::new(ppm.clone(), cfg).unwrap();
    let seqs: Vec<Vec<u32>> = g.0.iter().map(|c| c.0.clone()).collect();
    let values = scorer.score(&seqs).unwrap();
    for (v, case) in values.iter().zip(&g.0) {
        let want = *pick(case).last().unwrap();
        assert!((v - want).abs() < 2e-3, "{name}: batched {v} vs {want}");
    }
    let st = scorer.stats();
    let total: usize = seqs.iter().map(Vec::len).sum();
    assert!(
        st.tokens_computed < total as u64,
        "{name}: shared prefix computed once: {st:?}"
    );
    // Children of already-scored sequences compute only their new tokens.
    let before = scorer.stats().tokens_computed;
    let kids: Vec<Vec<u32>> = (0..3)
        .map(|k| [seqs[1].clone(), vec![60 + k, 61, 62]].concat())
        .collect();
    let kv = scorer.score(&kids).unwrap();
    let computed = scorer.stats().tokens_computed - before;
    assert!(
        computed <= 3 * 3 + 2 * 4,
        "{name}: computed {computed} tokens for 3 children"
    );
    for (k, v) in kids.iter().zip(kv) {
        let alone = *ppm.score_all_positions(k).unwrap().last().unwrap();
        assert_eq!(v, alone, "{name}: batched vs alone");
    }
}

#[test]
fn rstar_value_head_separate_file() {
    check("rstar-separate", |c| &c.1);
}

#[test]
fn rstar_value_head_combined_with_prefix() {
    check("rstar-combined", |c| &c.1);
}

#[test]
fn qwen2_math_prm_head() {
    check("qwen2-prm", |c| &c.2);
}

#[test]
fn missing_value_head_is_a_clear_error() {
    let e = Ppm::load(&common::fixtures().join("models/qwen2-f32-v5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("value head"), "{e}");
}
